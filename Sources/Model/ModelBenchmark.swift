import Foundation
import Numerics

/// Timing of the model's train step and inference forward, for `attnres bench model`. Variants are timed
/// round-robin (one run of each per round) so load from other processes and frequency drift hit them alike;
/// medians per variant; every result is consumed so the optimiser cannot drop the work.
public enum ModelBenchmark {
    /// Median and minimum milliseconds of one variant over the rounds. On a shared machine the minimum is the less
    /// disturbed estimate (another process's load only ever adds time); both are reported.
    public struct Timing: Sendable {
        public var median: Double
        public var minimum: Double
    }

    /// Median milliseconds of each closure, interleaved over `repetitions` rounds after `warmup` rounds.
    public static func interleavedMedians(warmup: Int = 3, repetitions: Int, _ bodies: [() -> Float]) -> [Double] {
        interleavedTimings(warmup: warmup, repetitions: repetitions, bodies).map(\.median)
    }

    /// Median and minimum milliseconds of each closure, interleaved over `repetitions` rounds after `warmup` rounds.
    public static func interleavedTimings(warmup: Int = 3, repetitions: Int, _ bodies: [() -> Float]) -> [Timing] {
        var sink: Float = 0
        for _ in 0..<warmup { for b in bodies { sink += b() } }
        var samples = [[Double]](repeating: [], count: bodies.count)
        for _ in 0..<repetitions {
            for (i, b) in bodies.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                sink += b()
                samples[i].append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
        }
        precondition(!sink.isNaN || sink.isNaN)  // consumed
        return samples.map { t in let sorted = t.sorted(); return Timing(median: sorted[sorted.count / 2], minimum: sorted[0]) }
    }

    /// Median ms of one optimizer step (forward + backward over all microbatches + AdamW) of each config.
    public static func trainSteps(_ configs: [TrainConfig], repetitions: Int) throws -> [Double] {
        try trainStepTimings(configs, repetitions: repetitions).map(\.median)
    }

    /// Median and minimum ms of one optimizer step of each config.
    public static func trainStepTimings(_ configs: [TrainConfig], repetitions: Int) throws -> [Timing] {
        final class Box { var trainer: Trainer; init(_ t: Trainer) { trainer = t } }
        let boxes = try configs.map { c in
            Box(try Trainer(config: c, data: .synthetic(seq: c.model.seq, vocab: c.model.vocab, seed: c.seed)))
        }
        return interleavedTimings(repetitions: repetitions, boxes.map { box in { box.trainer.step().loss } })
    }

    /// Median ms of an inference forward of one microbatch (microbatchSize sequences) for each (config, mode).
    public static func inference(_ variants: [(TrainConfig, Inference.Mode)], repetitions: Int) throws -> [Double] {
        try inferenceTimings(variants, repetitions: repetitions).map(\.median)
    }

    /// Median and minimum ms of an inference forward of one microbatch for each (config, mode).
    public static func inferenceTimings(_ variants: [(TrainConfig, Inference.Mode)], repetitions: Int) throws -> [Timing] {
        interleavedTimings(repetitions: repetitions, try inferenceBodies(variants))
    }

    /// One closure per (config, mode): an inference forward of one microbatch, returning its first logit.
    static func inferenceBodies(_ variants: [(TrainConfig, Inference.Mode)]) throws -> [() -> Float] {
        try variants.map { (config, mode) in
            let model = try Transformer(config: config.model)
            let p = model.initialParameters(seed: config.seed)
            let mb = BatchSource.synthetic(seq: config.model.seq, vocab: config.model.vocab, seed: config.seed)
                .batch(step: 1, microbatches: 1, microbatchSize: config.microbatchSize)[0]
            let inference = try Inference(config: config.model)
            return { inference.forward(mb, parameters: p, mode: mode, recordingLayerInputs: false).logits.data[0] }
        }
    }

    /// One variant of the benchmark run alone, for instruction counts (`valgrind --tool=callgrind`), where the
    /// difference block − standard is read per function between two processes that do nothing else.
    public enum ProfileVariant: String, Sendable, CaseIterable {
        case trainStandard = "train-standard", trainFull = "train-full", trainBlock = "train-block"
        case inferStandard = "infer-standard"
        case inferBlockTwoPhase = "infer-block-twoPhase", inferBlockOnePass = "infer-block-onePass"
        case inferFullTwoPhase = "infer-full-twoPhase", inferFullOnePass = "infer-full-onePass"

        /// The residual kind's raw value (`ResidualKind`).
        public var residual: String {
            switch self {
            case .trainStandard, .inferStandard: return "standard"
            case .trainFull, .inferFullTwoPhase, .inferFullOnePass: return "full"
            case .trainBlock, .inferBlockTwoPhase, .inferBlockOnePass: return "block"
            }
        }

        /// nil for a train step, else the inference mode.
        public var inference: Inference.Mode? {
            switch self {
            case .trainStandard, .trainFull, .trainBlock: return nil
            case .inferStandard, .inferBlockOnePass, .inferFullOnePass: return .onePass
            case .inferBlockTwoPhase, .inferFullTwoPhase: return .twoPhase
            }
        }
    }

    /// Runs `variant` of `config` (whose residual kind must be the variant's) `repetitions` times after one warm-up
    /// and returns the sum of its results (train: losses; inference: the first logit), so nothing is optimised away.
    public static func profile(_ variant: ProfileVariant, config: TrainConfig, repetitions: Int) throws -> Float {
        precondition(config.model.residual.rawValue == variant.residual)
        var sink: Float = 0
        if let mode = variant.inference {
            let body = try inferenceBodies([(config, mode)])[0]
            for _ in 0...repetitions { sink += body() }
        } else {
            var trainer = try Trainer(config: config, data: .synthetic(seq: config.model.seq, vocab: config.model.vocab,
                                                                       seed: config.seed))
            for _ in 0...repetitions { sink += trainer.step().loss }
        }
        return sink
    }
}

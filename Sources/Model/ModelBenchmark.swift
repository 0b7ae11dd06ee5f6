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
        let bodies: [() -> Float] = try variants.map { (config, mode) in
            let model = try Transformer(config: config.model)
            let p = model.initialParameters(seed: config.seed)
            let mb = BatchSource.synthetic(seq: config.model.seq, vocab: config.model.vocab, seed: config.seed)
                .batch(step: 1, microbatches: 1, microbatchSize: config.microbatchSize)[0]
            let inference = try Inference(config: config.model)
            return { inference.forward(mb, parameters: p, mode: mode).logits.data[0] }
        }
        return interleavedTimings(repetitions: repetitions, bodies)
    }
}

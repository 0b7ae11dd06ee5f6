import Foundation
import Numerics

/// Timing of the model's train step and inference forward, for `attnres bench model`. Medians of repeated runs on
/// fixed batches; every result is consumed so the optimiser cannot drop the work.
public enum ModelBenchmark {
    /// Median milliseconds of `body` over `repetitions` runs after `warmup` runs.
    public static func medianMilliseconds(warmup: Int = 3, repetitions: Int, _ body: () -> Float) -> (Double, Float) {
        var sink: Float = 0
        for _ in 0..<warmup { sink += body() }
        var samples: [Double] = []
        for _ in 0..<repetitions {
            let t0 = DispatchTime.now().uptimeNanoseconds
            sink += body()
            samples.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
        }
        samples.sort()
        return (samples[samples.count / 2], sink)
    }

    /// Median ms of one optimizer step (forward + backward over all microbatches + AdamW) of `config`.
    public static func trainStep(_ config: TrainConfig, repetitions: Int) throws -> Double {
        var trainer = try Trainer(config: config, data: .synthetic(seq: config.model.seq, vocab: config.model.vocab,
                                                                   seed: config.seed))
        return medianMilliseconds(repetitions: repetitions) { trainer.step().loss }.0
    }

    /// Median ms of an inference forward of one microbatch (microbatchSize sequences) of `config`.
    public static func inference(_ config: TrainConfig, mode: Inference.Mode, repetitions: Int) throws -> Double {
        let model = try Transformer(config: config.model)
        let p = model.initialParameters(seed: config.seed)
        let mb = BatchSource.synthetic(seq: config.model.seq, vocab: config.model.vocab, seed: config.seed)
            .batch(step: 1, microbatches: 1, microbatchSize: config.microbatchSize)[0]
        let inference = try Inference(config: config.model)
        return medianMilliseconds(repetitions: repetitions) {
            inference.forward(mb, parameters: p, mode: mode).logits.data[0]
        }.0
    }
}

import Foundation
import Numerics

/// The cross-checking export of issue item 5: after K steps, the parameters, the batch of step K+1, the gradients of
/// that batch's mean loss (before any update, same names) and the loss, so an independent implementation can match.
public enum Export {
    /// Writes params.safetensors, batch.safetensors, grads.safetensors and loss.json into `directory`.
    public static func write(_ trainer: Trainer, to directory: URL) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let c = trainer.config, step = trainer.completedSteps + 1
        var params = SafeTensors(), grads = SafeTensors(), batch = SafeTensors()
        let (loss, g) = trainer.lossAndGradients(step: step)
        for n in trainer.parameters.names {
            params.add(n, trainer.parameters[n])
            grads.add(n, g[n])
        }
        let mbs = trainer.batch(step: step)
        let rows = c.microbatches * c.microbatchSize
        batch.add("tokens", int32: mbs.flatMap(\.tokens), shape: [rows, c.model.seq])
        batch.add("targets", int32: mbs.flatMap(\.targets), shape: [rows, c.model.seq])
        params.metadata = ["format": "pt", "step": "\(trainer.completedSteps)"]
        try params.write(to: directory.appendingPathComponent("params.safetensors"))
        try grads.write(to: directory.appendingPathComponent("grads.safetensors"))
        try batch.write(to: directory.appendingPathComponent("batch.safetensors"))
        let m = c.model
        let json: [String: Any] = [
            "loss": Double(loss),
            "step": step,
            "config": ["layers": m.layers, "hidden": m.hidden, "heads": m.heads, "seq": m.seq, "vocab": m.vocab,
                       "residual": m.residual.rawValue, "blocks": m.effectiveBlocks,
                       "microbatches": c.microbatches, "microbatch_size": c.microbatchSize] as [String: Any],
        ]
        let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: directory.appendingPathComponent("loss.json"))
    }
}

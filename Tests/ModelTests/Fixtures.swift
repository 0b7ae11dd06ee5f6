import XCTest
@testable import Model
@testable import Numerics

/// Tiny configurations shared by the model tests (debug builds must stay fast).
enum Fixtures {
    /// L = 5 so block mode has a remainder block (S = 2: blocks {1,2}, {3,4,5}) and chunks split unevenly.
    static func config(_ kind: ResidualKind, layers: Int = 5, blocks: Int = 2) -> ModelConfig {
        ModelConfig(layers: layers, hidden: 8, heads: 2, seq: 4, vocab: 16, residual: kind, blocks: blocks)
    }

    static func microbatches(_ c: ModelConfig, seed: UInt64 = 3, step: Int = 1, m: Int = 2, b: Int = 2) -> [Microbatch] {
        BatchSource.synthetic(seq: c.seq, vocab: c.vocab, seed: seed).batch(step: step, microbatches: m, microbatchSize: b)
    }

    /// Parameters with non-zero pseudo-queries, so depth attention is not uniform and its key path is exercised.
    static func perturbedParameters(_ model: Transformer, seed: UInt64 = 5) -> ParameterSet {
        var p = model.initialParameters(seed: seed)
        var rng = SplitMix64(seed: 99)
        for n in p.names where n.hasSuffix(".query") || n.hasSuffix(".gain") {
            p.modify(n) { t in for i in 0..<t.count { t.data[i] += Float(rng.nextNormal()) * 0.5 } }
        }
        return p
    }
}

import Model

extension Topology {
    /// The model this topology trains in compute mode (and `attnres train` with the same file).
    public var modelConfig: ModelConfig {
        ModelConfig(layers: layers, hidden: hidden, heads: heads, seq: seq, vocab: vocab,
                    residual: residual, blocks: residual == .block ? blocks : layers)
    }
}

/// How sublayer outputs are combined across depth (DESIGN §3).
public enum ResidualKind: String, CaseIterable, Codable, Sendable {
    /// h_{l+1} = h_l + f_l(h_l).
    case standard
    /// Full AttnRes: block AttnRes with one block per layer (N = L), the same implementation.
    case full
    /// Block AttnRes with N blocks of S = ⌊L/N⌋ layers, the last block running to layer L.
    case block
}

/// A configuration value that cannot describe a model; names the field so a user can fix the input.
public enum ModelConfigError: Error, CustomStringConvertible, Equatable {
    case notPositive(field: String, value: Int)
    case headsDoNotDivideHidden(hidden: Int, heads: Int)
    case tooManyBlocks(blocks: Int, layers: Int)
    case tooManyChunks(chunks: Int, layers: Int)

    public var description: String {
        switch self {
        case let .notPositive(field, value): return "model.\(field) must be ≥ 1, got \(value)"
        case let .headsDoNotDivideHidden(h, n): return "model.heads (\(n)) must divide model.hidden (\(h))"
        case let .tooManyBlocks(n, l): return "residual.blocks (\(n)) must be ≤ model.layers (\(l))"
        case let .tooManyChunks(c, l): return "the model has \(l) layers, too few for \(c) chunks (need layers ≥ chunks)"
        }
    }
}

/// The exact model of DESIGN §3: shapes and the residual mode. A value type so the cluster can fill it from its
/// topology file and ship it to workers; every process derives the same parameters and batches from it.
public struct ModelConfig: Equatable, Codable, Sendable {
    /// Number of sublayers L (attention and MLP each count as one layer, as in the paper).
    public var layers: Int
    /// Model width d.
    public var hidden: Int
    /// Attention heads H (d must be divisible by H).
    public var heads: Int
    /// Sequence length s (also the number of learned positions).
    public var seq: Int
    /// Vocabulary size (256 for raw bytes; text bytes are mapped by `byte % vocab`).
    public var vocab: Int
    /// Residual mode.
    public var residual: ResidualKind
    /// Number of blocks N for `.block`; ignored (taken as L) for `.full` and unused for `.standard`.
    public var blocks: Int

    public init(layers: Int = 8, hidden: Int = 64, heads: Int = 4, seq: Int = 32, vocab: Int = 256,
                residual: ResidualKind = .block, blocks: Int = 4) {
        self.layers = layers; self.hidden = hidden; self.heads = heads; self.seq = seq; self.vocab = vocab
        self.residual = residual; self.blocks = blocks
    }

    /// Checks every constraint of DESIGN §3; throws the first violated one.
    public func validate() throws {
        for (name, v) in [("layers", layers), ("hidden", hidden), ("heads", heads), ("seq", seq),
                          ("vocab", vocab), ("blocks", blocks)] where v < 1 {
            throw ModelConfigError.notPositive(field: name, value: v)
        }
        if hidden % heads != 0 { throw ModelConfigError.headsDoNotDivideHidden(hidden: hidden, heads: heads) }
        if residual == .block && blocks > layers { throw ModelConfigError.tooManyBlocks(blocks: blocks, layers: layers) }
    }

    /// True for full and block AttnRes (depth attention with pseudo-queries).
    public var usesDepthAttention: Bool { residual != .standard }

    /// N: the number of blocks actually used (L for full, 0 meaning "no blocks" for standard).
    public var effectiveBlocks: Int { partition?.blocks ?? 0 }

    /// The depth blocks of this model (nil for the standard residual): the one `BlockPartition` that chunks, hop
    /// plans and the traffic model share.
    public var partition: BlockPartition? { BlockPartition.of(residual, layers: layers, blocks: blocks) }

    /// The block (1-based) that holds layer l (1-based): block n holds (n-1)S+1 … nS, block N runs to L.
    public func block(ofLayer l: Int) -> Int { partition!.block(ofLayer: l) }

    /// True when layer l is the last layer of its block, i.e. its output completes b_n.
    public func endsBlock(_ l: Int) -> Bool { partition!.endsBlock(l) }

    /// Odd layers are causal self-attention, even layers are MLPs (DESIGN §3).
    public func isAttention(_ l: Int) -> Bool { l % 2 == 1 }
}

import Numerics

/// The tensors a microbatch carries across hop k → k+1 (DESIGN §4), or their gradients on the way back.
///
/// - standard: `hidden` = h (one activation), `blocks` empty, `partial` nil.
/// - full / block: `blocks` = the completed block representations b_0 … b_n in order, and `partial` = b_n^i when the
///   hop falls inside a block; `partial` is nil at a block boundary (the next layer starts a block and must get no
///   partial, not even a zero one). Every tensor is [microbatch·seq, hidden].
/// A gradient value has exactly the same structure as the activations it belongs to.
public struct HopActivations: Sendable {
    /// Residual stream h (standard only).
    public var hidden: Tensor?
    /// Completed block representations b_0 … b_n (full/block only).
    public var blocks: [Tensor]
    /// The partial b_n^i of the block in progress, if any (full/block only).
    public var partial: Tensor?

    public init(hidden: Tensor? = nil, blocks: [Tensor] = [], partial: Tensor? = nil) {
        self.hidden = hidden; self.blocks = blocks; self.partial = partial
    }

    /// The tensors in wire order: [h] for standard, otherwise [b_0 … b_n] followed by the partial when present.
    public var tensors: [Tensor] {
        if let h = hidden { return [h] }
        return partial.map { blocks + [$0] } ?? blocks
    }

    /// Zero tensors with this value's structure (a gradient buffer to accumulate into).
    public func zerosLike() -> HopActivations {
        HopActivations(hidden: hidden.map { Tensor(zeros: $0.shape) },
                       blocks: blocks.map { Tensor(zeros: $0.shape) },
                       partial: partial.map { Tensor(zeros: $0.shape) })
    }
}

/// What a hop carries, known from the static layout alone (no handshake): the receiver of hop k → k+1 rebuilds
/// `HopActivations` from the tensors on the wire with it.
public struct HopStructure: Equatable, Sendable {
    /// Standard residual: a single hidden state.
    public var hidden: Bool
    /// Number of completed block representations b_0 … b_n (0 for standard).
    public var blocks: Int
    /// Whether the partial b_n^i follows the blocks.
    public var partial: Bool

    /// Number of tensors on the wire.
    public var tensorCount: Int { hidden ? 1 : blocks + (partial ? 1 : 0) }

    /// The structure after layer l (1-based, 0 = right after the embedding) of `config`.
    public init(config c: ModelConfig, afterLayer l: Int) {
        if !c.usesDepthAttention { hidden = true; blocks = 0; partial = false; return }
        hidden = false
        let completed = l == 0 ? 0 : (c.endsBlock(l) ? c.block(ofLayer: l) : c.block(ofLayer: l) - 1)
        blocks = 1 + completed
        partial = l > 0 && !c.endsBlock(l)
    }
}

extension HopActivations {
    /// Rebuilds activations (or gradients) from wire-ordered tensors (`tensors`) and the static structure.
    public init(tensors: [Tensor], structure s: HopStructure) {
        precondition(tensors.count == s.tensorCount, "hop carries \(tensors.count) tensors, layout says \(s.tensorCount)")
        if s.hidden { self.init(hidden: tensors[0]); return }
        self.init(blocks: Array(tensors.prefix(s.blocks)), partial: s.partial ? tensors[s.blocks] : nil)
    }
}

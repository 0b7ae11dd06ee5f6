import Numerics

/// What one tensor between two chunks is, in the paper's words: the one vocabulary of hop tensors that the model,
/// the hop plan, the executor and the wire descriptors (role, block, partial layers) all speak.
public enum TensorRole: Hashable, Sendable, CustomStringConvertible {
    /// The hidden state h of a standard residual stream.
    case hidden
    /// A completed block representation b_n (b_0 is the embedding; with Full AttnRes b_n is layer n's output).
    case block(Int)
    /// The partial sum b_n^i of the first `layers` outputs of the open block n.
    case partial(block: Int, layers: Int)

    public var description: String {
        switch self {
        case .hidden: return "h"
        case .block(let n): return "b\(n)"
        case .partial(let n, let i): return "b\(n)^\(i)"
        }
    }

    /// Every tensor of the state after layer `l` (0 = right after the embedding), in wire order: [h] for the
    /// standard residual (`partition` nil), otherwise b_0 … b_n followed by the open partial when there is one.
    public static func state(afterLayer l: Int, partition: BlockPartition?) -> [TensorRole] {
        guard let partition else { return [.hidden] }
        var roles = partition.completedBlocks(afterLayer: l).map { TensorRole.block($0) }
        if let p = partition.openPartial(afterLayer: l) { roles.append(.partial(block: p.block, layers: p.layers)) }
        return roles
    }
}

/// The tensors a microbatch carries between chunk k and k+1 (DESIGN §4), or their gradients on the way back, for
/// any kind of value: real tensors in compute mode, buffers of the right size in shape mode.
///
/// - standard: `hidden` = h (one activation), `blocks` empty, `partial` nil.
/// - full / block: `blocks` = the completed block representations b_0 … b_n in order, and `partial` = b_n^i when the
///   hop falls inside a block; `partial` is nil at a block boundary (the next layer starts a block and must get no
///   partial, not even a zero one). Every tensor is [microbatch·seq, hidden].
/// A gradient value has exactly the same structure as the activations it belongs to.
public struct HopValues<Value> {
    /// Residual stream h (standard only).
    public var hidden: Value?
    /// Completed block representations b_0 … b_n (full/block only).
    public var blocks: [Value]
    /// The partial b_n^i of the block in progress, if any (full/block only).
    public var partial: Value?

    public init(hidden: Value? = nil, blocks: [Value] = [], partial: Value? = nil) {
        self.hidden = hidden; self.blocks = blocks; self.partial = partial
    }

    /// Builds the value of a state from its roles (`TensorRole.state`) and one value per role, in the same order.
    public init(roles: [TensorRole], values: [Value]) {
        precondition(roles.count == values.count, "\(roles.count) roles, \(values.count) values")
        self.init()
        for (role, v) in zip(roles, values) {
            switch role {
            case .hidden: hidden = v
            case .block(let n):
                precondition(n == blocks.count, "blocks must come in order b_0 … b_n")
                blocks.append(v)
            case .partial: partial = v
            }
        }
    }

    /// The tensors in wire order: [h] for standard, otherwise [b_0 … b_n] followed by the partial when present.
    public var tensors: [Value] {
        if let h = hidden { return [h] }
        return partial.map { blocks + [$0] } ?? blocks
    }

    /// The tensor that plays `role`, if this state has it.
    public subscript(role: TensorRole) -> Value? {
        switch role {
        case .hidden: return hidden
        case .block(let n): return n >= 0 && n < blocks.count ? blocks[n] : nil
        case .partial: return partial
        }
    }
}

extension HopValues: Sendable where Value: Sendable {}

/// Real activations or gradients between chunks.
public typealias HopActivations = HopValues<Tensor>

extension HopValues where Value == Tensor {
    /// Zero tensors with this value's structure (a gradient buffer to accumulate into).
    public func zerosLike() -> HopActivations {
        HopActivations(hidden: hidden.map { Tensor(zeros: $0.shape) },
                       blocks: blocks.map { Tensor(zeros: $0.shape) },
                       partial: partial.map { Tensor(zeros: $0.shape) })
    }
}

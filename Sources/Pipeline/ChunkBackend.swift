import Model

/// One hop message of a step: the tensors of hop `hop` (chunk hop → hop+1) for one microbatch, forward, or their
/// gradients, backward. Within a step every key is sent exactly once and received exactly once.
public struct HopKey: Hashable, Sendable, CustomStringConvertible {
    public let direction: Direction
    /// Hop k carries chunk k's outputs to chunk k+1 (and their gradients back).
    public let hop: Int
    public let microbatch: Int

    public init(direction: Direction, hop: Int, microbatch: Int) {
        self.direction = direction; self.hop = hop; self.microbatch = microbatch
    }

    /// The rank that sends this message.
    public func source(_ layout: Layout) -> Int {
        layout.rank(ofChunk: direction == .forward ? hop : hop + 1)
    }

    /// The rank that receives it.
    public func destination(_ layout: Layout) -> Int {
        layout.rank(ofChunk: direction == .forward ? hop + 1 : hop)
    }

    public var description: String { "\(direction.rawValue) hop \(hop) microbatch \(microbatch)" }
}

extension Action {
    /// The hop message a communication action sends or receives (nil for forward and backward).
    public var message: HopKey? {
        switch self {
        case .recvForward(let c, let m): return HopKey(direction: .forward, hop: c - 1, microbatch: m)
        case .sendForward(let c, let m): return HopKey(direction: .forward, hop: c, microbatch: m)
        case .recvBackward(let c, let m): return HopKey(direction: .backward, hop: c, microbatch: m)
        case .sendBackward(let c, let m): return HopKey(direction: .backward, hop: c - 1, microbatch: m)
        case .forward, .backward: return nil
        }
    }
}

/// What runs a chunk: the real model (compute mode) or tensors of exactly the real shapes (shape mode). The
/// executor hands it whole states (every block, partial or hidden state a chunk reads or writes), assembled from
/// the wire and the rank's cross-stage cache; the backend never sees a socket or the cache.
public protocol ChunkBackend {
    /// One tensor: `Tensor` in compute mode, a wire buffer in shape mode.
    associatedtype Value

    /// Forward of `chunk` for `microbatch`. `input` is the state after the previous chunk (nil for chunk 0, which
    /// embeds tokens); returns the state after this chunk, every role of `HopPlan.outputRoles` (nil on the last
    /// chunk, which ends in the loss).
    mutating func forward(chunk: Int, microbatch: Int, input: HopValues<Value>?) throws -> HopValues<Value>?

    /// Backward of `chunk` for `microbatch`: the gradient of its output state (nil on the last chunk) to the
    /// gradient of its input state (nil on chunk 0).
    mutating func backward(chunk: Int, microbatch: Int, gradOutput: HopValues<Value>?) throws -> HopValues<Value>?

    /// The gradient of an output tensor that no consumer reads through this copy (a block the next rank already
    /// holds): zero. `hop` is the hop the tensor's gradient belongs to.
    func zeroGradient(_ role: TensorRole, microbatch: Int, hop: Int) -> Value

    /// `sum += contribution`: two gradients of the same tensor (cross-stage deposits).
    func accumulate(_ sum: inout Value, _ contribution: Value, role: TensorRole, microbatch: Int) throws

    /// Bytes a value occupies (the cache's peak is reported in bytes).
    func byteCount(_ value: Value) -> Int
}

/// The links of one rank: sends never block (an unbounded queue, as ZeroMQ's), a receive returns nil until the
/// message has arrived. The worker's channel is ZeroMQ; tests use an in-memory one.
public protocol HopChannel {
    associatedtype Value

    /// Sends the tensors of `key`, one per role of `roles` (the hop plan's, in its order).
    mutating func send(_ key: HopKey, roles: [TensorRole], values: [Value]) throws

    /// The tensors of `key` in the order of `roles`, or nil when the message has not arrived yet. A message that
    /// arrived with other roles is an error naming what was expected and what came.
    mutating func receive(_ key: HopKey, roles: [TensorRole]) throws -> [Value]?
}

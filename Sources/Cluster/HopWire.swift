import Pipeline
import Wire

/// How the tensors of a hop plan appear on the wire: shared by the shape and compute stage runners.
enum HopWire {
    /// The descriptor of `role` for a [b, s, d] tensor.
    static func descriptor(_ role: TensorRole, _ t: Topology) -> TensorDescriptor {
        let dims = [UInt32(t.microbatchSize), UInt32(t.seq), UInt32(t.hidden)]
        switch role {
        case .hidden: return TensorDescriptor(role: .hidden, block: 0, partialLayers: 0, dims: dims)
        case .block(let n): return TensorDescriptor(role: .block, block: UInt32(n), partialLayers: 0, dims: dims)
        case .partial(let n, let i): return TensorDescriptor(role: .partial, block: UInt32(n), partialLayers: UInt32(i), dims: dims)
        }
    }

    static func role(_ d: TensorDescriptor) -> TensorRole {
        switch d.role {
        case .hidden: return .hidden
        case .block: return .block(Int(d.block))
        case .partial: return .partial(block: Int(d.block), layers: Int(d.partialLayers))
        }
    }

    /// The header's step and variant fields (two fields since protocol version 2), so that two variants never mix.
    static func wireStep(variant: Int, step: Int) -> WireStep { WireStep(step: UInt32(step), variant: UInt16(variant)) }

    /// A received message must carry exactly the planned tensors.
    static func expect(_ msg: DataMessage, roles: [TensorRole], direction: Direction, hop: Int, microbatch m: Int, rank: Int) throws {
        let got = msg.header.tensors.map(role)
        guard got == roles else {
            throw WorkerError.protocolViolation(rank: rank, "hop \(hop) \(direction.rawValue) microbatch \(m): expected \(roles), received \(got)")
        }
    }

    /// Sends the tensors of hop `hop` (forward: chunk hop → hop+1; backward: the reverse).
    static func send(_ worker: Worker, spec: RunSpec, plan: HopPlan, direction: Direction, hop: Int, step: Int, microbatch m: Int,
                     payloads: [Message]) throws {
        let layout = plan.layout
        let dst = layout.rank(ofChunk: direction == .forward ? hop + 1 : hop)
        let header = FrameHeader(kind: direction == .forward ? .forward : .backward, step: wireStep(variant: spec.variant, step: step),
                                 microbatch: UInt32(m), hop: UInt32(hop), source: UInt16(worker.rank), destination: UInt16(dst),
                                 tensors: plan.tensors[hop].map { descriptor($0, spec.topology) })
        try worker.sendData(to: dst, header: header, payloads: payloads)
    }
}

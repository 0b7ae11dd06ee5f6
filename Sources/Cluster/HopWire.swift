import Foundation
import Model
import Numerics
import Pipeline
import Wire

/// How the hop tensors of the executor appear on the wire: the descriptor of a `TensorRole` (Wire's role code,
/// block and partial layers) and the ZeroMQ channel a worker's executor sends and receives through.
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
}

/// A worker's links as the executor sees them: hop messages over the worker's ZeroMQ sockets, each tensor a frame.
/// `encode` / `decode` turn an executor value into a frame and back (shape mode shares the buffer itself,
/// compute mode copies a tensor's floats).
struct WorkerHopChannel<Value>: HopChannel {
    let worker: Worker
    let spec: RunSpec
    let plan: HopPlan
    var step = 0
    let encode: (Value) -> Message
    let decode: (Message) -> Value

    func dataKey(_ key: HopKey) -> DataKey {
        DataKey(variant: spec.variant, step: step, kind: key.direction == .forward ? .forward : .backward,
                hop: key.hop, microbatch: key.microbatch)
    }

    mutating func send(_ key: HopKey, roles: [TensorRole], values: [Value]) throws {
        let dst = key.destination(plan.layout)
        let header = FrameHeader(kind: key.direction == .forward ? .forward : .backward,
                                 step: HopWire.wireStep(variant: spec.variant, step: step),
                                 microbatch: UInt32(key.microbatch), hop: UInt32(key.hop), source: UInt16(worker.rank),
                                 destination: UInt16(dst), tensors: roles.map { HopWire.descriptor($0, spec.topology) })
        try worker.sendData(to: dst, header: header, payloads: values.map(encode))
    }

    mutating func receive(_ key: HopKey, roles: [TensorRole]) throws -> [Value]? {
        guard let msg = worker.arrived(dataKey(key)) else { return nil }
        let got = msg.header.tensors.map(HopWire.role)
        guard got == roles else {
            throw WorkerError.protocolViolation(rank: worker.rank, "\(key): expected \(roles), received \(got) from rank \(msg.header.source)")
        }
        return msg.payloads.map(decode)
    }
}

extension HopWire {
    /// A tensor's bytes in a new zero-copy message (the tensor's own array is not handed to libzmq).
    static func message(_ t: Tensor) -> Message {
        let bytes = t.count * 4
        let p = malloc(max(bytes, 4))!
        t.data.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        return Message(takingMalloced: p, count: bytes)
    }

    /// A received frame as a [rows, cols] tensor (its size was checked against the descriptor on arrival).
    static func tensor(_ m: Message, rows: Int, cols: Int) -> Tensor {
        let n = m.count / 4
        let data = [Float](unsafeUninitializedCapacity: n) { buf, count in
            memcpy(buf.baseAddress!, m.data, n * 4)
            count = n
        }
        return Tensor(shape: [rows, cols], data: data)
    }
}

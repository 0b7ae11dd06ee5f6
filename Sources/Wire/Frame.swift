/// The data-frame format of docs/protocol.md, version 2. A data message is one header frame followed by one
/// ZeroMQ frame per tensor (sent without copying). All integers little-endian.
///
///     offset size field
///     0      4    magic "ARES"
///     4      2    version (2)
///     6      2    kind (1 forward activations, 2 backward gradients, 3 link probe)
///     8      4    step (0-based within the variant)
///     12     4    microbatch
///     16     4    hop k (chunk k → chunk k+1)
///     20     2    source rank
///     22     2    destination rank
///     24     2    tensor count n
///     26     2    variant (index within the session; version 1 had a flags field, always 0, here)
///     28     4    header length = 32 + 24·n
///     32     24·n tensor descriptors
///
/// Tensor descriptor: role u8 (1 hidden, 2 block, 3 partial), dtype u8 (1 float32), ndim u8 (1…3),
/// reserved u8 (0), block u32, partial layers u32, dims 3 × u32 (unused dims are 1).
public enum Frame {
    public static let magic: [UInt8] = Array("ARES".utf8)
    /// The one data and control protocol version this build speaks.
    public static let version: UInt16 = 2
    /// Bytes of a header before its descriptors; the traffic model counts header overhead with this.
    public static let fixedHeaderBytes = 32
    /// Bytes of one tensor descriptor in a header.
    public static let descriptorBytes = 24
    /// Elements one tensor may have at most (2^40): far above any legal b·s·d, far below an Int overflow.
    public static let maxElements: UInt64 = 1 << 40
    /// Most tensors one message may carry (Full AttnRes at L = 4096 still fits).
    public static let maxTensors = 4097
}

/// A data message's position in the session: the step within its variant and the variant.
public struct WireStep: Equatable, Sendable {
    public var step: UInt32
    public var variant: UInt16
    public init(step: UInt32, variant: UInt16) { self.step = step; self.variant = variant }
}

/// What a data message is.
public enum FrameKind: UInt16, Sendable, Codable {
    case forward = 1, backward = 2, probe = 3
}

/// The role of a tensor on the wire.
public enum WireRole: UInt8, Sendable, Codable {
    case hidden = 1, block = 2, partial = 3
}

/// Element types; only float32 is sent today.
public enum DType: UInt8, Sendable, Codable {
    case float32 = 1
    public var size: Int { 4 }
}

/// One tensor's descriptor in the header.
public struct TensorDescriptor: Equatable, Sendable {
    public var role: WireRole
    public var dtype: DType = .float32
    public var block: UInt32
    public var partialLayers: UInt32
    public var dims: [UInt32]

    public init(role: WireRole, dtype: DType = .float32, block: UInt32, partialLayers: UInt32, dims: [UInt32]) {
        self.role = role; self.dtype = dtype; self.block = block; self.partialLayers = partialLayers; self.dims = dims
    }

    /// Payload bytes the matching frame must hold. Overflow-checked: a shape whose byte count does not fit an
    /// Int (which `FrameHeader.decode` never lets through) gives Int.max, a size no frame can have.
    public var payloadBytes: Int {
        var n = dtype.size
        for d in dims {
            let (p, overflow) = n.multipliedReportingOverflow(by: Int(d))
            if overflow { return Int.max }
            n = p
        }
        return n
    }
}

/// The header frame of a data message.
public struct FrameHeader: Equatable, Sendable {
    public var kind: FrameKind
    /// Training step, 0-based within the variant.
    public var step: UInt32
    /// Index of the variant within the session (`attnres compare` runs several on the same workers).
    public var variant: UInt16
    public var microbatch: UInt32
    public var hop: UInt32
    public var source: UInt16
    public var destination: UInt16
    public var tensors: [TensorDescriptor]

    public init(kind: FrameKind, step: UInt32, variant: UInt16 = 0, microbatch: UInt32, hop: UInt32, source: UInt16, destination: UInt16,
                tensors: [TensorDescriptor]) {
        self.kind = kind; self.step = step; self.variant = variant; self.microbatch = microbatch; self.hop = hop
        self.source = source; self.destination = destination; self.tensors = tensors
    }

    /// The same, with step and variant given together as a `WireStep`.
    public init(kind: FrameKind, step: WireStep, microbatch: UInt32, hop: UInt32, source: UInt16, destination: UInt16,
                tensors: [TensorDescriptor]) {
        self.init(kind: kind, step: step.step, variant: step.variant, microbatch: microbatch, hop: hop, source: source,
                  destination: destination, tensors: tensors)
    }

    public var encodedBytes: Int { Frame.fixedHeaderBytes + Frame.descriptorBytes * tensors.count }

    public func encode() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(encodedBytes)
        out += Frame.magic
        out.le(Frame.version); out.le(kind.rawValue)
        out.le(step); out.le(microbatch); out.le(hop)
        out.le(source); out.le(destination)
        out.le(UInt16(tensors.count)); out.le(variant)
        out.le(UInt32(encodedBytes))
        for t in tensors {
            out.append(t.role.rawValue); out.append(t.dtype.rawValue); out.append(UInt8(t.dims.count)); out.append(0)
            out.le(t.block); out.le(t.partialLayers)
            for i in 0..<3 { out.le(i < t.dims.count ? t.dims[i] : 1) }
        }
        return out
    }

    /// Decodes and validates a header frame; never traps on hostile input.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws -> FrameHeader {
        var r = Reader(bytes)
        guard bytes.count >= Frame.fixedHeaderBytes else { throw FrameError.tooShort(bytes.count) }
        let magic = try r.bytes(4)
        guard magic == Frame.magic else { throw FrameError.badMagic(magic) }
        let version: UInt16 = try r.le()
        guard version == Frame.version else { throw FrameError.unsupportedVersion(version) }
        let rawKind: UInt16 = try r.le()
        guard let kind = FrameKind(rawValue: rawKind) else { throw FrameError.unknownKind(rawKind) }
        let step: UInt32 = try r.le(), microbatch: UInt32 = try r.le(), hop: UInt32 = try r.le()
        let src: UInt16 = try r.le(), dst: UInt16 = try r.le()
        let count: UInt16 = try r.le(), variant: UInt16 = try r.le()
        guard Int(count) <= Frame.maxTensors else { throw FrameError.malformed("tensor count \(count) exceeds \(Frame.maxTensors)") }
        let length: UInt32 = try r.le()
        let expected = Frame.fixedHeaderBytes + Frame.descriptorBytes * Int(count)
        guard Int(length) == expected, bytes.count == expected else {
            throw FrameError.malformed("header length field \(length), frame \(bytes.count) bytes, \(count) tensors need \(expected)")
        }
        var tensors: [TensorDescriptor] = []
        for i in 0..<Int(count) {
            let rawRole: UInt8 = try r.le(), rawType: UInt8 = try r.le(), ndim: UInt8 = try r.le(), _: UInt8 = try r.le()
            guard let role = WireRole(rawValue: rawRole) else { throw FrameError.malformed("tensor \(i): unknown role \(rawRole)") }
            guard let dtype = DType(rawValue: rawType) else { throw FrameError.malformed("tensor \(i): unknown dtype \(rawType)") }
            guard (1...3).contains(ndim) else { throw FrameError.malformed("tensor \(i): ndim \(ndim) not in 1…3") }
            let block: UInt32 = try r.le(), partial: UInt32 = try r.le()
            var dims: [UInt32] = []
            for _ in 0..<3 { dims.append(try r.le()) }
            guard dims[Int(ndim)...].allSatisfy({ $0 == 1 }) else { throw FrameError.malformed("tensor \(i): unused dims must be 1") }
            let shape = Array(dims[..<Int(ndim)])
            var elements: UInt64 = 1
            for d in shape {
                let (p, overflow) = elements.multipliedReportingOverflow(by: UInt64(d))
                guard !overflow, p <= Frame.maxElements else {
                    throw FrameError.malformed("tensor \(i): shape \(shape) has more than 2^40 elements")
                }
                elements = p
            }
            tensors.append(TensorDescriptor(role: role, dtype: dtype, block: block, partialLayers: partial, dims: shape))
        }
        return FrameHeader(kind: kind, step: step, variant: variant, microbatch: microbatch, hop: hop, source: src, destination: dst, tensors: tensors)
    }

    /// The source rank field of a frame that may not decode, for naming the sender in the rejection; nil when the
    /// frame is too short or does not start with the magic.
    public static func claimedSource(_ bytes: UnsafeRawBufferPointer) -> UInt16? {
        guard bytes.count >= 22, Array(bytes[0..<4]) == Frame.magic else { return nil }
        return UInt16(bytes[20]) | UInt16(bytes[21]) << 8
    }

    /// Checks that the payload frames that followed the header match its descriptors.
    public func validatePayloads(_ sizes: [Int]) throws {
        guard sizes.count == tensors.count else {
            throw FrameError.malformed("header announces \(tensors.count) tensors, message has \(sizes.count) payload frames")
        }
        for (i, (t, n)) in zip(tensors, sizes).enumerated() where t.payloadBytes != n {
            throw FrameError.malformed("tensor \(i): descriptor says \(t.payloadBytes) bytes, frame has \(n)")
        }
    }
}

/// Why a frame was rejected.
public enum FrameError: Error, Equatable, CustomStringConvertible {
    case tooShort(Int)
    case badMagic([UInt8])
    case unsupportedVersion(UInt16)
    case unknownKind(UInt16)
    case malformed(String)

    public var description: String {
        switch self {
        case .tooShort(let n): return "frame rejected: header of \(n) bytes is shorter than the fixed \(Frame.fixedHeaderBytes)"
        case .badMagic(let m): return "frame rejected: bad magic \(m.map { String(format2: $0) }.joined(separator: " ")) (expected 41 52 45 53, \"ARES\")"
        case .unsupportedVersion(let v): return "frame rejected: protocol version \(v), this build speaks version \(Frame.version)"
        case .unknownKind(let k): return "frame rejected: unknown kind \(k)"
        case .malformed(let s): return "frame rejected: \(s)"
        }
    }
}

extension String {
    init(format2 byte: UInt8) {
        let hex = String(byte, radix: 16)
        self = hex.count == 1 ? "0" + hex : hex
    }
}

extension Array where Element == UInt8 {
    mutating func le<T: FixedWidthInteger>(_ v: T) {
        var x = v.littleEndian
        Swift.withUnsafeBytes(of: &x) { append(contentsOf: $0) }
    }
}

/// Bounds-checked little-endian reader.
struct Reader {
    let buf: UnsafeRawBufferPointer
    var at = 0
    init(_ buf: UnsafeRawBufferPointer) { self.buf = buf }

    mutating func bytes(_ n: Int) throws -> [UInt8] {
        guard at + n <= buf.count else { throw FrameError.tooShort(buf.count) }
        defer { at += n }
        return Array(buf[at..<(at + n)])
    }

    mutating func le<T: FixedWidthInteger>() throws -> T {
        let n = MemoryLayout<T>.size
        guard at + n <= buf.count else { throw FrameError.tooShort(buf.count) }
        var v: T = 0
        withUnsafeMutableBytes(of: &v) { $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: buf[at..<(at + n)])) }
        at += n
        return T(littleEndian: v)
    }
}

/// A data message as it travels: the header frame plus one frame per tensor. Both the worker and the wire
/// benchmark send and receive through these two functions, so the benchmark measures the real data path.
public struct DataMessage {
    public let header: FrameHeader
    public let payloads: [Message]

    public init(header: FrameHeader, payloads: [Message]) {
        self.header = header
        self.payloads = payloads
    }

    /// Encodes the header and sends header + tensor frames (tensor frames zero copy). Returns the payload
    /// byte count of each tensor and the header size, read before libzmq takes the frames.
    @discardableResult
    public func send(on socket: Socket) throws -> (payloadBytes: [Int], headerBytes: Int) {
        try transmit { try socket.send($0) }
    }

    /// `send(on:)`, calling `stillWaiting` while the socket has no connection to queue the message into
    /// (`Socket.send(_:pollMs:stillWaiting:)`) instead of blocking until it has one.
    @discardableResult
    public func send(on socket: Socket, stillWaiting: () throws -> Void) throws -> (payloadBytes: [Int], headerBytes: Int) {
        try transmit { try socket.send($0, stillWaiting: stillWaiting) }
    }

    /// The frames (header, then the tensors) handed to `send`, with the sizes read before libzmq takes them.
    private func transmit(_ send: ([Message]) throws -> Void) rethrows -> (payloadBytes: [Int], headerBytes: Int) {
        let h = header.encode()
        let sizes = payloads.map(\.count)
        try send([Message(bytes: h)] + payloads)
        return (sizes, h.count)
    }

    /// Decodes and validates a received multipart message: header, version, and every payload's size.
    public static func decode(_ frames: [Message]) throws -> DataMessage {
        guard let first = frames.first else { throw FrameError.tooShort(0) }
        let header = try FrameHeader.decode(first.bytes)
        try header.validatePayloads(frames.dropFirst().map(\.count))
        return DataMessage(header: header, payloads: Array(frames.dropFirst()))
    }
}

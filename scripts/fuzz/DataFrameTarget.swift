// libFuzzer target over the data-frame decoders: `FrameHeader.decode`, `TensorDescriptor.payloadBytes`,
// `FrameHeader.validatePayloads` and `DataMessage.decode`. Compiled into the Wire module itself (see the
// Makefile's `fuzz` target), so it needs no import; it calls only Wire's public API.
//
// One input is one header frame. The target does more than "does not trap": it checks the properties a worker
// relies on, and traps (a libFuzzer finding) when one fails.

/// What one input must satisfy.
enum DataFrameProperties {
    /// Payload frames larger than this are not allocated for the `DataMessage.decode` check (memory per input).
    static let payloadBudget = 1 << 20

    static func check(_ bytes: UnsafeRawBufferPointer) {
        let header: FrameHeader
        do { header = try FrameHeader.decode(bytes) } catch let e as FrameError {
            _ = e.description
            expectRejected([Message(bytes: Array(bytes))], "a header FrameHeader.decode rejects")
            return
        } catch { fatalError("FrameHeader.decode threw a non-FrameError: \(error)") }

        // A decoded header re-encodes to a header that decodes to the same value.
        let again = header.encode()
        let redecoded = try? again.withUnsafeBytes { try FrameHeader.decode($0) }
        guard redecoded == header else { fatalError("decode(encode(h)) != h for \(header)") }

        let sizes = header.tensors.map(\.payloadBytes)
        guard sizes.allSatisfy({ $0 >= 0 }) else { fatalError("negative payload size in \(sizes)") }
        do { try header.validatePayloads(sizes) } catch { fatalError("own payload sizes rejected: \(error)") }
        if let last = sizes.last {
            expectThrows({ try header.validatePayloads(Array(sizes.dropLast())) }, "one payload frame missing")
            expectThrows({ try header.validatePayloads(Array(sizes.dropLast()) + [last + 1]) }, "one byte too many")
            expectRejected([Message(bytes: Array(bytes))], "a header without its payload frames")
        }

        // The whole multipart message, when its payloads are small enough to allocate.
        let total = sizes.reduce(0) { $0 > payloadBudget ? $0 : $0 + $1 }
        guard total <= payloadBudget else { return }
        let frames = [Message(bytes: Array(bytes))] + sizes.map { Message(bytes: [UInt8](repeating: 0, count: $0)) }
        do {
            let m = try DataMessage.decode(frames)
            guard m.header == header, m.payloads.map(\.count) == sizes else { fatalError("DataMessage.decode changed the message") }
        } catch { fatalError("DataMessage.decode rejected a well-formed message: \(error)") }
        expectRejected(frames + [Message(bytes: [0])], "one payload frame too many")
    }

    static func expectThrows(_ body: () throws -> Void, _ what: String) {
        do { try body() } catch is FrameError { return } catch { fatalError("\(what): non-FrameError \(error)") }
        fatalError("\(what) was accepted")
    }

    static func expectRejected(_ frames: [Message], _ what: String) {
        expectThrows({ _ = try DataMessage.decode(frames) }, what)
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func dataFrameFuzzTarget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    DataFrameProperties.check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

/// Headers of every shape the workers send, built with the encoder, plus boundary cases of the size check.
enum DataFrameSeeds {
    static func all() -> [(name: String, bytes: [UInt8])] {
        func d(_ role: WireRole, _ dims: [UInt32], block: UInt32 = 0, partial: UInt32 = 0) -> TensorDescriptor {
            TensorDescriptor(role: role, block: block, partialLayers: partial, dims: dims)
        }
        let activation: [UInt32] = [2, 32, 64]
        let headers: [(String, FrameHeader)] = [
            ("probe", FrameHeader(kind: .probe, step: 0, microbatch: 0, hop: 0, source: 2, destination: 3, tensors: [])),
            ("forward-hidden", FrameHeader(kind: .forward, step: 1, microbatch: 5, hop: 3, source: 3, destination: 0,
                                           tensors: [d(.hidden, activation)])),
            ("forward-block-partial", FrameHeader(kind: .forward, step: 1 << 20 | 1, microbatch: 5, hop: 3, source: 3, destination: 0,
                                                  tensors: [d(.block, activation, block: 2), d(.partial, activation, block: 3, partial: 1)])),
            ("backward-hidden", FrameHeader(kind: .backward, step: 2 << 20 | 7, microbatch: 0, hop: 0, source: 1, destination: 0,
                                            tensors: [d(.hidden, [1, 4, 8])])),
            ("forward-full-33-blocks", FrameHeader(kind: .forward, step: 0, microbatch: 1, hop: 1, source: 1, destination: 2,
                                                   tensors: (0..<33).map { d(.block, activation, block: UInt32($0)) })),
            ("ndim-1-and-2", FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1,
                                         tensors: [d(.hidden, [16]), d(.block, [3, 5], block: 1)])),
            ("zero-sized-dim", FrameHeader(kind: .backward, step: 3, microbatch: 2, hop: 1, source: 2, destination: 1,
                                           tensors: [d(.hidden, [0, 7, 3])])),
            ("largest-tensor", FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1,
                                           tensors: [d(.hidden, [1 << 20, 1 << 20, 1])])),
            ("one-element-too-many", FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1,
                                                 tensors: [d(.hidden, [1 << 20, 1 << 20, 2])])),
        ]
        return headers.map { ($0.0, $0.1.encode()) }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func dataFrameFuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    SeedWriter.writeIfAsked(DataFrameSeeds.all)
    return 0
}

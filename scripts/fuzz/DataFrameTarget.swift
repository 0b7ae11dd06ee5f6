// libFuzzer target over the data-frame decoders: `FrameHeader.decode`, `TensorDescriptor.payloadBytes`,
// `FrameHeader.validatePayloads` and `DataMessage.decode`. One input is one header frame; any property of
// Tests/WireTests/DataFrameContract.swift (compiled in with this file) that fails is a trap, a libFuzzer finding.
import Wire

@_cdecl("LLVMFuzzerTestOneInput")
public func dataFrameFuzzTarget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let violations = DataFrameContract.violations(Array(UnsafeRawBufferPointer(start: data, count: size)))
    if !violations.isEmpty { fatalError(violations.joined(separator: "; ")) }
    return 0
}

/// Headers of every shape the workers send, built with the encoder, plus the boundary cases of the size check.
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
            ("forward-block-partial", FrameHeader(kind: .forward, step: 1, variant: 1, microbatch: 5, hop: 3, source: 3, destination: 0,
                                                  tensors: [d(.block, activation, block: 2), d(.partial, activation, block: 3, partial: 1)])),
            ("backward-hidden", FrameHeader(kind: .backward, step: 7, variant: 2, microbatch: 0, hop: 0, source: 1, destination: 0,
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

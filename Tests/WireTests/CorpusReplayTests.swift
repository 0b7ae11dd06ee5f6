import Foundation
import XCTest
import Wire

/// The regression corpus Tests/Corpus/data-frame (header frames that once crashed a decoder, found by `make fuzz`
/// or by reading; Tests/Corpus/README.md names each) replayed through the data-frame decoders. Every input must
/// keep `DataFrameContract`: decode, or be rejected with a `FrameError`, never trap.
final class CorpusReplayTests: XCTestCase {
    /// Tests/Corpus/TARGET, one input per file, by file name.
    static func corpus(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Corpus/\(target)")
        return try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted().filter { !$0.hasPrefix(".") }.map {
            ($0, Array(try Data(contentsOf: dir.appendingPathComponent($0))))
        }
    }

    func testEveryDataFrameCorpusInputDecodesOrIsRejected() throws {
        let inputs = try CorpusReplayTests.corpus("data-frame")
        XCTAssertGreaterThanOrEqual(inputs.count, 2, "the data-frame regression corpus is missing")
        for (name, bytes) in inputs {
            XCTAssertEqual(DataFrameContract.violations(bytes), [], name)
        }
    }

    /// The size check multiplies the dims without wrapping: 2^31 · 2^31 · 4 = 2^64 once wrapped to 0 elements,
    /// passed the bound, and trapped in `payloadBytes`. Built with the encoder, so it tracks the wire version.
    func testShapesWhoseElementCountOverflowsAreRejected() throws {
        for dims: [UInt32] in [[1 << 31, 1 << 31, 4], [1 << 20, 1 << 28, 1 << 16], [UInt32.max, UInt32.max, UInt32.max], [1 << 20, 1 << 20, 2]] {
            let header = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1,
                                     tensors: [TensorDescriptor(role: .hidden, block: 0, partialLayers: 0, dims: dims)]).encode()
            XCTAssertThrowsError(try header.withUnsafeBytes { try FrameHeader.decode($0) }, "\(dims)") {
                XCTAssertTrue("\($0)".contains("tensor 0: shape \(dims) too large"), "\($0)")
            }
            XCTAssertEqual(DataFrameContract.violations(header), [], "\(dims)")
        }
        let largest = TensorDescriptor(role: .hidden, block: 0, partialLayers: 0, dims: [1 << 20, 1 << 20, 1])
        let header = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: [largest])
        XCTAssertEqual(try header.encode().withUnsafeBytes { try FrameHeader.decode($0) }, header, "2^40 elements is the bound, inclusive")
        let empty = TensorDescriptor(role: .hidden, block: 0, partialLayers: 0, dims: [UInt32.max, 0, UInt32.max])
        let zero = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: [empty])
        XCTAssertEqual(try zero.encode().withUnsafeBytes { try FrameHeader.decode($0) }, zero, "a zero dim is an empty tensor")
    }

    /// A descriptor built in code (not decoded) with a size beyond `Int` gives `Int.max`, which no frame matches.
    func testPayloadBytesSaturatesInsteadOfTrapping() throws {
        let huge = TensorDescriptor(role: .block, block: 1, partialLayers: 0, dims: [1 << 31, 1 << 31, 4])
        XCTAssertEqual(huge.payloadBytes, Int.max)
        XCTAssertEqual(TensorDescriptor(role: .block, block: 1, partialLayers: 0, dims: [1 << 31, 1 << 31, 4, 0]).payloadBytes, 0)
        XCTAssertEqual(TensorDescriptor(role: .block, block: 1, partialLayers: 0, dims: [2, 32, 64]).payloadBytes, 16384)
        let header = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: [huge])
        XCTAssertThrowsError(try header.validatePayloads([0])) { XCTAssertTrue("\($0)".contains("tensor 0: descriptor says"), "\($0)") }
    }
}

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

    /// The element counts the fuzzer and the corpus found wrapping to 0 (2^31 · 2^31 · 4 and 2^20 · 2^28 · 2^16 are
    /// both 2^64), and others past the 2^40 bound, built with the encoder so they track the wire version: each is
    /// a clean rejection that keeps the contract. A zero dim is an empty tensor, whatever the other dims.
    func testShapesWhoseElementCountOverflowsAreRejected() throws {
        func header(_ dims: [UInt32]) -> [UInt8] {
            FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1,
                        tensors: [TensorDescriptor(role: .hidden, block: 0, partialLayers: 0, dims: dims)]).encode()
        }
        for dims: [UInt32] in [[1 << 31, 1 << 31, 4], [1 << 20, 1 << 28, 1 << 16], [UInt32.max, UInt32.max, UInt32.max], [1 << 20, 1 << 20, 2]] {
            XCTAssertThrowsError(try header(dims).withUnsafeBytes { try FrameHeader.decode($0) }, "\(dims)") {
                XCTAssertTrue("\($0)".contains("tensor 0: shape \(dims) has more than 2^40 elements"), "\($0)")
            }
            XCTAssertEqual(DataFrameContract.violations(header(dims)), [], "\(dims)")
        }
        let empty = try header([UInt32.max, 0, UInt32.max]).withUnsafeBytes { try FrameHeader.decode($0) }
        XCTAssertEqual(empty.tensors.map(\.payloadBytes), [0])
        XCTAssertEqual(DataFrameContract.violations(header([UInt32.max, 0, UInt32.max])), [])
    }
}

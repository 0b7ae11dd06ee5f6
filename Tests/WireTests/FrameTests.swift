import Foundation
import XCTest
@testable import Wire

final class FrameTests: XCTestCase {
    /// The golden frames of docs/protocol.md, by name.
    static let golden: [String: FrameHeader] = [
        "forward-hop3": FrameHeader(kind: .forward, step: 1, microbatch: 5, hop: 3, source: 3, destination: 0, tensors: [
            TensorDescriptor(role: .block, block: 2, partialLayers: 0, dims: [2, 32, 64]),
            TensorDescriptor(role: .partial, block: 3, partialLayers: 1, dims: [2, 32, 64]),
        ]),
        "backward-hidden": FrameHeader(kind: .backward, step: 7, variant: 2, microbatch: 0, hop: 0, source: 1, destination: 0, tensors: [
            TensorDescriptor(role: .hidden, block: 0, partialLayers: 0, dims: [1, 4, 8]),
        ]),
        "probe": FrameHeader(kind: .probe, step: 0, microbatch: 0, hop: 0, source: 2, destination: 3, tensors: []),
    ]

    /// Hexdumps in fenced ```hexdump NAME blocks of docs/protocol.md.
    static func hexdumps() throws -> [String: [UInt8]] {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let text = try String(contentsOf: root.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        var out: [String: [UInt8]] = [:]
        var name: String?
        var bytes: [UInt8] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```hexdump ") { name = String(line.dropFirst(11)); bytes = []; continue }
            if line.hasPrefix("```"), let n = name { out[n] = bytes; name = nil; continue }
            if name != nil {
                for h in line.split(separator: " ").dropFirst() { bytes.append(UInt8(h, radix: 16)!) }
            }
        }
        return out
    }

    func testGoldenFramesMatchTheProtocolDocumentByteForByte() throws {
        let dumps = try FrameTests.hexdumps()
        XCTAssertEqual(Set(dumps.keys.filter { !$0.hasPrefix("control-") }), Set(FrameTests.golden.keys))
        for (name, header) in FrameTests.golden {
            XCTAssertEqual(header.encode(), dumps[name], name)
            let decoded = try dumps[name]!.withUnsafeBytes { try FrameHeader.decode($0) }
            XCTAssertEqual(decoded, header, name)
        }
    }

    func testControlFramePrefixAndVersionAreChecked() throws {
        struct Heartbeat: Codable, Equatable { var type = "heartbeat"; var rank: Int }
        let m = try ControlFrame.encode(Heartbeat(rank: 1))
        XCTAssertEqual(m.array, try FrameTests.hexdumps()["control-heartbeat"])
        XCTAssertEqual(try ControlFrame.decode(Heartbeat.self, from: m), Heartbeat(rank: 1))
        XCTAssertEqual(try ControlFrame.version(of: m), 2)
        let v1 = try ControlFrame.encode(Heartbeat(rank: 1), version: 1)
        XCTAssertEqual(try ControlFrame.version(of: v1), 1)
        XCTAssertThrowsError(try ControlFrame.decode(Heartbeat.self, from: v1)) { XCTAssertEqual($0 as? FrameError, .unsupportedVersion(1)) }
        XCTAssertThrowsError(try ControlFrame.decode(Heartbeat.self, from: Message(bytes: Array("ARES".utf8) + [2, 0, 16, 0] + Array("{".utf8)))) {
            XCTAssertTrue("\($0)".contains("control body is not a valid Heartbeat"), "\($0)")
        }
    }

    /// The step and the variant are separate fields: the largest values of both survive, neither leaks into the other.
    func testStepAndVariantAreSeparateFields() throws {
        let h = FrameHeader(kind: .forward, step: UInt32.max, variant: UInt16.max, microbatch: 1, hop: 2, source: 0, destination: 1, tensors: [])
        let bytes = h.encode()
        XCTAssertEqual(Array(bytes[8..<12]), [0xff, 0xff, 0xff, 0xff])
        XCTAssertEqual(Array(bytes[26..<28]), [0xff, 0xff])
        XCTAssertEqual(try bytes.withUnsafeBytes { try FrameHeader.decode($0) }, h)
        XCTAssertEqual(h.encodedBytes, Frame.fixedHeaderBytes)
    }

    /// A 56-byte header announcing one tensor of 2^31 × 2^31 × 4 elements is a clean rejection, not an overflow trap.
    func testHugeShapesAreRejectedWithoutOverflow() throws {
        let huge = TensorDescriptor(role: .block, block: 1, partialLayers: 0, dims: [1 << 31, 1 << 31, 4])
        XCTAssertEqual(huge.payloadBytes, Int.max, "overflow saturates: no frame has that size")
        let bytes = FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 7, destination: 1, tensors: [huge]).encode()
        XCTAssertEqual(bytes.count, 56)
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameHeader.decode($0) }) {
            XCTAssertTrue("\($0)".contains("more than 2^40 elements"), "\($0)")
        }
        XCTAssertEqual(bytes.withUnsafeBytes { FrameHeader.claimedSource($0) }, 7)
        let exact = TensorDescriptor(role: .block, block: 1, partialLayers: 0, dims: [1 << 20, 1 << 20, 1])
        XCTAssertNoThrow(try FrameHeader(kind: .forward, step: 0, microbatch: 0, hop: 0, source: 0, destination: 1, tensors: [exact])
            .encode().withUnsafeBytes { try FrameHeader.decode($0) }, "2^40 elements is the limit, inclusive")
    }

    func testWrongVersionAndMagicAreRejectedClearly() throws {
        var bytes = FrameTests.golden["probe"]!.encode()
        bytes[4] = 1
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameHeader.decode($0) }) {
            XCTAssertEqual($0 as? FrameError, .unsupportedVersion(1))
            XCTAssertTrue("\($0)".contains("protocol version 1, this build speaks version 2"))
        }
        bytes = FrameTests.golden["probe"]!.encode()
        bytes[0] = 0x42
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameHeader.decode($0) }) {
            XCTAssertTrue("\($0)".contains("bad magic 42 52 45 53"), "\($0)")
        }
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 5).withUnsafeBytes { try FrameHeader.decode($0) }) {
            XCTAssertEqual($0 as? FrameError, .tooShort(5))
        }
    }

    func testPayloadSizesAreChecked() throws {
        let h = FrameTests.golden["forward-hop3"]!
        XCTAssertNoThrow(try h.validatePayloads([16384, 16384]))
        XCTAssertThrowsError(try h.validatePayloads([16384])) { XCTAssertTrue("\($0)".contains("announces 2 tensors")) }
        XCTAssertThrowsError(try h.validatePayloads([16384, 100])) { XCTAssertTrue("\($0)".contains("tensor 1")) }
    }

    /// Every truncation and every single-byte corruption of a valid header either decodes or throws; none traps.
    func testCorruptedHeadersNeverCrash() throws {
        let good = FrameTests.golden["forward-hop3"]!.encode()
        var rejected = 0
        for cut in 0..<good.count {
            XCTAssertThrowsError(try Array(good[..<cut]).withUnsafeBytes { try FrameHeader.decode($0) })
        }
        for i in good.indices {
            for v: UInt8 in [0, 1, 2, 3, 4, 0x7f, 0xff] {
                var b = good
                b[i] = v
                do { _ = try b.withUnsafeBytes { try FrameHeader.decode($0) } } catch { rejected += 1 }
            }
        }
        XCTAssertGreaterThan(rejected, 100)
    }
}

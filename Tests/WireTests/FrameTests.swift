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
        "backward-hidden": FrameHeader(kind: .backward, step: 2 << 20 | 7, microbatch: 0, hop: 0, source: 1, destination: 0, tensors: [
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
        XCTAssertEqual(Set(dumps.keys), Set(FrameTests.golden.keys).union(["control-heartbeat"]))
        for (name, header) in FrameTests.golden {
            XCTAssertEqual(header.encode(), dumps[name], name)
            let decoded = try dumps[name]!.withUnsafeBytes { try FrameHeader.decode($0) }
            XCTAssertEqual(decoded, header, name)
        }
    }

    func testControlFrameMatchesTheDocumentAndRoundTrips() throws {
        struct Heartbeat: Codable, Equatable { struct Body: Codable, Equatable { var rank: Int }; var heartbeat: Body }
        let m = try ControlFrame.encode(Heartbeat(heartbeat: .init(rank: 1)))
        XCTAssertEqual(m.array, try FrameTests.hexdumps()["control-heartbeat"])
        XCTAssertEqual(try ControlFrame.decode(Heartbeat.self, from: m), Heartbeat(heartbeat: .init(rank: 1)))
    }

    func testWrongVersionAndMagicAreRejectedClearly() throws {
        var bytes = FrameTests.golden["probe"]!.encode()
        bytes[4] = 2
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try FrameHeader.decode($0) }) {
            XCTAssertEqual($0 as? FrameError, .unsupportedVersion(2))
            XCTAssertTrue("\($0)".contains("protocol version 2, this build speaks version 1"))
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

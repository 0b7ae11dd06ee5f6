import XCTest
@testable import Cluster

/// SHA-256 against the FIPS 180-4 example vectors (NIST CSRC "SHA_All" examples) and the one-million-'a' vector.
final class SHA256Tests: XCTestCase {
    func testFIPS180Vectors() {
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(SHA256.hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(SHA256.hex(Array(("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                                         + "klmnopqrlmnopqrsmnopqrstnopqrstu").utf8)),
                       "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1")
        XCTAssertEqual(SHA256.hex([UInt8](repeating: 0x61, count: 1_000_000)),
                       "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    /// Fed in uneven pieces (across block boundaries, 55/56/64-byte padding edges) the digest is the one-shot one.
    func testStreamingEqualsOneShot() {
        let bytes = (0..<5).flatMap { _ in [UInt8](0...255) }
        XCTAssertEqual(SHA256.hex(bytes), "d414b085826eb06778483ba35564dc849e643359f69ed9747878ba6e54985bed")
        var h = SHA256()
        var i = 0
        for size in [1, 55, 56, 63, 64, 65, 7, 300] where i < bytes.count {
            h.update(bytes[i..<min(bytes.count, i + size)])
            i += size
        }
        h.update(bytes[min(i, bytes.count)...])
        XCTAssertEqual(h.finalizeHex(), SHA256.hex(bytes))
        for n in [55, 56, 57, 63, 64, 65] { XCTAssertNotEqual(SHA256.hex(bytes.prefix(n)), SHA256.hex(bytes.prefix(n + 1)), "\(n)") }
    }
}

import Foundation
import XCTest
@testable import Wire

final class SocketTests: XCTestCase {
    /// A zero-copy tensor, and a shared reference to it, arrive intact over a real ipc socket.
    func testZeroCopyAndSharedFramesArriveIntact() throws {
        let ctx = ZContext()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-wire-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let pull = try Socket(ctx, .pull)
        try pull.bind("ipc://\(dir.path)/t")
        let push = try Socket(ctx, .push)
        try push.connect(pull.lastEndpoint)
        let n = 1 << 18
        let p = malloc(n * 4)!
        let floats = p.bindMemory(to: Float.self, capacity: n)
        for i in 0..<n { floats[i] = Float(i % 1000) }
        let tensor = Message(takingMalloced: p, count: n * 4)
        let kept = tensor.share()
        try push.send([Message(bytes: [1, 2, 3]), tensor])
        XCTAssertEqual(tensor.count, 0, "a sent message belongs to libzmq")
        try push.send([kept.share()])
        let first = try XCTUnwrap(try pull.receive())
        XCTAssertEqual(first.map(\.count), [3, n * 4])
        XCTAssertEqual(first[0].array, [1, 2, 3])
        let got = first[1].data.bindMemory(to: Float.self, capacity: n)
        XCTAssertEqual(got[999], 999)
        XCTAssertEqual(got[n - 1], Float((n - 1) % 1000))
        let second = try XCTUnwrap(try pull.receive())
        XCTAssertEqual(second[0].count, n * 4)
        XCTAssertEqual(memcmp(second[0].data, kept.data, n * 4), 0)
        XCTAssertNil(try pull.receive(nonBlocking: true))
    }

    func testAddressInUseIsReported() throws {
        let ctx = ZContext()
        let a = try Socket(ctx, .pull)
        try a.bind("tcp://127.0.0.1:*")
        let b = try Socket(ctx, .pull)
        XCTAssertThrowsError(try b.bind(a.lastEndpoint)) {
            XCTAssertTrue(($0 as? ZMQError)?.isAddressInUse ?? false, "\($0)")
        }
    }
}

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

    /// A context's I/O thread runs under SCHED_FIFO exactly when this process may (as root, in CI, it may), and the
    /// policy is the one `ZContext.ioThreadPolicy` reports: read back from the kernel for every libzmq I/O thread.
    func testIOThreadRunsUnderThePolicyReported() throws {
        let ctx = ZContext()
        let pull = try Socket(ctx, .pull)    // the I/O thread starts with the first socket
        try pull.bind("tcp://127.0.0.1:*")
        // A message over tcp passes through the I/O thread, which sets its policy and then its name as it starts:
        // once the message is in, both are in /proc (its thread may not have named itself right after the bind).
        let push = try Socket(ctx, .push)
        try push.connect(pull.lastEndpoint)
        try push.send([Message(bytes: [7])])
        XCTAssertEqual(try XCTUnwrap(try pull.receive()).map(\.count), [1])
        XCTAssertEqual(ctx.realtimeIOThread, ZContext.ioThreadPolicy == .realtime)
        let wanted: Int32 = ZContext.ioThreadPolicy == .realtime ? SCHED_FIFO : SCHED_OTHER
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")
        var seen = 0
        for tid in tasks {
            guard let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8), comm.hasPrefix("ZMQbg/IO"),
                  let id = Int32(tid) else { continue }
            seen += 1
            XCTAssertEqual(sched_getscheduler(id), wanted, "thread \(tid) (\(comm.trimmingCharacters(in: .whitespacesAndNewlines)))")
        }
        XCTAssertGreaterThan(seen, 0, "no libzmq I/O thread found in /proc/self/task")
        if getuid() == 0 { print("I/O thread policy as root: \(ZContext.ioThreadPolicy.rawValue)") }
    }
}

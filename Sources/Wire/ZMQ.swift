import CZeroMQ
import CSys
#if canImport(Glibc)
import Glibc
#endif

/// Every `zmq_*` call of the project goes through this file and its CURVE half, ZMQCurve.swift (STYLE: one layer
/// over the syscalls).

/// A libzmq failure with the call that failed and libzmq's own message.
public struct ZMQError: Error, CustomStringConvertible, Equatable {
    public let call: String
    public let errno: Int32
    public var message: String { String(cString: zmq_strerror(errno)) }
    public var description: String { "\(call): \(message)" }
    public var isAddressInUse: Bool { errno == EADDRINUSE }
    public var isTimeout: Bool { errno == EAGAIN }

    static func last(_ call: String) -> ZMQError { ZMQError(call: call, errno: zmq_errno()) }
}

/// A ZeroMQ context. One per process; closing it waits for sockets with linger.
public final class ZContext: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer

    /// Whether this context's I/O thread runs under SCHED_FIFO: every context of a process has the same policy.
    public var realtimeIOThread: Bool { ZContext.ioThreadPolicy == .realtime }

    public init() {
        raw = zmq_ctx_new()
        // Data threads: one I/O thread moves GB/s on loopback; keep the second core for compute.
        zmq_ctx_set(raw, ZMQ_IO_THREADS, 1)
        if realtimeIOThread {
            zmq_ctx_set(raw, ZMQ_THREAD_SCHED_POLICY, SCHED_FIFO)
            zmq_ctx_set(raw, ZMQ_THREAD_PRIORITY, 1)
        }
    }

    /// How the I/O thread is scheduled. On a machine whose cores all compute, a message handed to an I/O thread
    /// of the default policy waits for the scheduler to preempt a compute thread: on a 2-core Zen 4 VM (Linux
    /// 6.18) a 64 KiB hop then took a mean 300–540 µs from the end of its send to the waiting receiver, with a
    /// tenth over 1.2 ms; with the I/O thread under SCHED_FIFO priority 1 it took 130–200 µs (docs/step-time.md).
    /// A plain link's I/O thread only moves bytes and sleeps in epoll, so it holds a core briefly; a CURVE link's
    /// encrypts in it too (a few hundred MB/s here), so a large encrypted tensor holds a core for that long, ahead of
    /// every normal thread on it (the kernel's real-time throttling still leaves others 5 % of each second).
    public enum IOThreadPolicy: String, Sendable {
        /// SCHED_FIFO priority 1: where the process may (root or CAP_SYS_NICE and a cgroup with real-time time),
        /// unless `ATTNRES_IO_THREAD=normal`.
        case realtime
        /// The default policy (SCHED_OTHER).
        case normal
    }

    /// This process's policy, decided once: `ATTNRES_IO_THREAD=normal` asks for the default, and so does a process
    /// that may not use SCHED_FIFO (a probe thread tries it first: libzmq aborts an I/O thread that is refused).
    public static let ioThreadPolicy: IOThreadPolicy = {
        if let v = getenv("ATTNRES_IO_THREAD").map({ String(cString: $0) }), v == "normal" { return .normal }
        return attnres_realtime_threads_permitted() == 1 ? .realtime : .normal
    }()

    deinit { zmq_ctx_term(raw) }

    /// libzmq's version, e.g. "4.3.4".
    public static var version: String {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}

/// The socket types the project uses.
public enum SocketType {
    case push, pull, router, dealer
    /// A ZAP handler answers libzmq's authentication requests on a REP socket (ZeroMQ RFC 27); a socket monitor
    /// delivers its events on a PAIR socket (ZMQCurve.swift).
    case rep, pair
    var raw: Int32 {
        switch self {
        case .rep: return ZMQ_REP
        case .pair: return ZMQ_PAIR
        case .push: return ZMQ_PUSH
        case .pull: return ZMQ_PULL
        case .router: return ZMQ_ROUTER
        case .dealer: return ZMQ_DEALER
        }
    }
}

/// A ZeroMQ message. Owns a heap-allocated `zmq_msg_t` so it never moves; received tensor frames stay in
/// libzmq's buffer (no copy) until the last owner lets go.
public final class Message: @unchecked Sendable {
    let msg: UnsafeMutablePointer<zmq_msg_t>

    /// An empty message, to receive into.
    public init() {
        msg = .allocate(capacity: 1)
        zmq_msg_init(msg)
    }

    /// A message holding a copy of `bytes` (for small frames such as headers).
    public init(bytes: [UInt8]) {
        msg = .allocate(capacity: 1)
        zmq_msg_init_size(msg, bytes.count)
        bytes.withUnsafeBytes { src in
            if let base = src.baseAddress { zmq_msg_data(msg).copyMemory(from: base, byteCount: bytes.count) }
        }
    }

    /// A message that takes ownership of `malloc`'d memory without copying it: libzmq calls `free` when the
    /// last reference (including ones queued for sending) is gone.
    public init(takingMalloced pointer: UnsafeMutableRawPointer, count: Int) {
        msg = .allocate(capacity: 1)
        zmq_msg_init_data(msg, pointer, count, attnresFreeCallback, nil)
    }

    /// A message over memory the caller keeps alive and frees itself (no free callback): for buffers that
    /// outlive every send, such as a benchmark's.
    public init(borrowing pointer: UnsafeMutableRawPointer, count: Int) {
        msg = .allocate(capacity: 1)
        zmq_msg_init_data(msg, pointer, count, nil, nil)
    }

    /// A new reference to the same bytes (libzmq reference counting; no byte copy for large frames).
    public func share() -> Message {
        let m = Message()
        zmq_msg_copy(m.msg, msg)
        return m
    }

    deinit {
        zmq_msg_close(msg)
        msg.deallocate()
    }

    public var count: Int { zmq_msg_size(msg) }
    public var data: UnsafeMutableRawPointer { zmq_msg_data(msg) }
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: data, count: count) }
    public var array: [UInt8] { Array(bytes) }
}

/// A ZeroMQ socket with deterministic close (linger 0 unless set otherwise).
public final class Socket: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
    private var closed = false
    public let context: ZContext

    public init(_ context: ZContext, _ type: SocketType) throws {
        guard let s = zmq_socket(context.raw, type.raw) else { throw ZMQError.last("zmq_socket") }
        self.context = context
        raw = s
        try setInt(ZMQ_LINGER, 0)
    }

    deinit { close() }

    public func close() {
        if !closed { zmq_close(raw); closed = true }
    }

    /// Closes after giving queued outgoing messages up to `lingerMs` to reach their peer. Every socket here is
    /// created with linger 0 (a dead peer must never block shutdown), so a last word such as "failed" or
    /// "shutdown" is sent with this instead of plain `close()`, which would discard it.
    public func close(lingerMs: Int32) {
        guard !closed else { return }
        try? setInt(ZMQ_LINGER, lingerMs)
        close()
    }

    public func setInt(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(raw, option, &v, MemoryLayout<Int32>.size) == 0 else { throw ZMQError.last("zmq_setsockopt(\(option))") }
    }

    public func setInt64(_ option: Int32, _ value: Int64) throws {
        var v = value
        guard zmq_setsockopt(raw, option, &v, MemoryLayout<Int64>.size) == 0 else { throw ZMQError.last("zmq_setsockopt(\(option))") }
    }

    /// libzmq drops the connection of a peer that sends a frame larger than `bytes`, before any of it is queued:
    /// the bound on what one hostile or broken peer can make this process allocate. Set before bind / connect.
    public func setMaxMessageSize(_ bytes: Int) throws { try setInt64(ZMQ_MAXMSGSIZE, Int64(bytes)) }

    public func setBytes(_ option: Int32, _ value: [UInt8]) throws {
        guard value.withUnsafeBytes({ zmq_setsockopt(raw, option, $0.baseAddress, value.count) }) == 0 else {
            throw ZMQError.last("zmq_setsockopt(\(option))")
        }
    }

    /// Unlimited queues, so a send never blocks on a slow peer: the schedule, not flow control, bounds memory.
    public func setUnboundedQueues() throws {
        try setInt(ZMQ_SNDHWM, 0)
        try setInt(ZMQ_RCVHWM, 0)
    }

    /// Queue messages only on completed connections: a send blocks until a peer is really there.
    public func setImmediate() throws { try setInt(ZMQ_IMMEDIATE, 1) }

    /// A ROUTER fails a send to an unknown peer instead of dropping it silently.
    public func setRouterMandatory() throws { try setInt(ZMQ_ROUTER_MANDATORY, 1) }

    public func setIdentity(_ id: String) throws { try setBytes(ZMQ_ROUTING_ID, Array(id.utf8)) }

    /// ZMTP heartbeats: a silent peer is dropped after `timeoutMs`.
    public func setHeartbeat(intervalMs: Int32, timeoutMs: Int32) throws {
        try setInt(ZMQ_HEARTBEAT_IVL, intervalMs)
        try setInt(ZMQ_HEARTBEAT_TIMEOUT, timeoutMs)
    }

    public func bind(_ endpoint: String) throws {
        guard zmq_bind(raw, endpoint) == 0 else {
            let e = ZMQError.last("zmq_bind(\(endpoint))")
            throw e
        }
    }

    public func connect(_ endpoint: String) throws {
        guard zmq_connect(raw, endpoint) == 0 else { throw ZMQError.last("zmq_connect(\(endpoint))") }
    }

    /// The endpoint actually bound (resolves `tcp://host:*` wildcards).
    public var lastEndpoint: String {
        var buf = [CChar](repeating: 0, count: 512)
        var len = buf.count
        zmq_getsockopt(raw, ZMQ_LAST_ENDPOINT, &buf, &len)
        return String(cString: buf)
    }

    /// Sends `frames` as one multipart message. Messages are consumed (their bytes now belong to libzmq).
    public func send(_ frames: [Message]) throws {
        for (i, f) in frames.enumerated() {
            let flags: Int32 = i < frames.count - 1 ? ZMQ_SNDMORE : 0
            while zmq_msg_send(f.msg, raw, flags) < 0 {
                if zmq_errno() == EINTR { continue }
                throw ZMQError.last("zmq_msg_send")
            }
        }
    }

    /// Sends `frames` as one multipart message without ever blocking for good. libzmq refuses the first frame
    /// (EAGAIN) only while the socket has no pipe to queue it into: an unbounded queue never fills, and a connecting
    /// socket keeps its pipe across reconnects, so that means the connection's session ended (a handshake refused
    /// or failed, after which libzmq does not reconnect). A blocking send would then wait for ever. This one waits
    /// for a pipe `pollMs` at a time and calls `stillWaiting` in between, which throws to give up (a worker checks
    /// its monitor, its coordinator and its deadline there). The remaining frames follow the first into its pipe.
    public func send(_ frames: [Message], pollMs: Int = 100, stillWaiting: () throws -> Void) throws {
        guard let first = frames.first else { return }
        let flags: Int32 = frames.count > 1 ? ZMQ_SNDMORE : 0
        while zmq_msg_send(first.msg, raw, flags | ZMQ_DONTWAIT) < 0 {
            let e = zmq_errno()
            if e == EINTR { continue }
            guard e == EAGAIN else { throw ZMQError.last("zmq_msg_send") }
            try stillWaiting()
            var item = zmq_pollitem_t(socket: raw, fd: 0, events: Int16(ZMQ_POLLOUT), revents: 0)
            if zmq_poll(&item, 1, pollMs) < 0, zmq_errno() != EINTR { throw ZMQError.last("zmq_poll") }
        }
        try send(Array(frames.dropFirst()))
    }

    /// Sends a single-frame message without blocking; false when libzmq cannot queue it now (no peer, or the
    /// high-water mark reached). For best-effort traffic such as heartbeats, which must never block their thread.
    @discardableResult
    public func trySend(_ frame: Message) throws -> Bool {
        while zmq_msg_send(frame.msg, raw, ZMQ_DONTWAIT) < 0 {
            let e = zmq_errno()
            if e == EINTR { continue }
            if e == EAGAIN { return false }
            throw ZMQError.last("zmq_msg_send")
        }
        return true
    }

    /// Receives one multipart message; blocks unless `nonBlocking`, in which case nil means nothing waiting.
    public func receive(nonBlocking: Bool = false) throws -> [Message]? {
        var frames: [Message] = []
        while true {
            let m = Message()
            while zmq_msg_recv(m.msg, raw, nonBlocking && frames.isEmpty ? ZMQ_DONTWAIT : 0) < 0 {
                let e = zmq_errno()
                if e == EINTR { continue }
                if e == EAGAIN && frames.isEmpty { return nil }
                throw ZMQError.last("zmq_msg_recv")
            }
            frames.append(m)
            if zmq_msg_more(m.msg) == 0 { return frames }
        }
    }

    /// Waits up to `timeoutMs` (−1 forever) for any of `sockets` to be readable; returns their indices.
    public static func poll(_ sockets: [Socket], timeoutMs: Int) throws -> [Int] {
        var items = sockets.map { zmq_pollitem_t(socket: $0.raw, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0) }
        let n = zmq_poll(&items, Int32(items.count), timeoutMs)
        if n < 0 {
            if zmq_errno() == EINTR { return [] }
            throw ZMQError.last("zmq_poll")
        }
        return items.indices.filter { items[$0].revents & Int16(ZMQ_POLLIN) != 0 }
    }
}

/// The plainest libzmq loops, for benchmarks: what a C programmer would write, without attnres framing.
public enum RawZMQ {
    /// Sends `count` single-frame messages of `bytes` bytes from `buffer`, zero copy (`zmq_msg_init_data`).
    public static func sendLoop(_ s: Socket, buffer: UnsafeMutableRawPointer, bytes: Int, count: Int) throws {
        var msg = zmq_msg_t()
        for _ in 0..<count {
            zmq_msg_init_data(&msg, buffer, bytes, nil, nil)
            guard zmq_msg_send(&msg, s.raw, 0) >= 0 else { throw ZMQError.last("zmq_msg_send") }
        }
    }

    /// Receives `count` messages and returns the bytes received.
    public static func receiveLoop(_ s: Socket, count: Int) throws -> Int {
        var msg = zmq_msg_t()
        zmq_msg_init(&msg)
        defer { zmq_msg_close(&msg) }
        var total = 0
        for _ in 0..<count {
            let n = zmq_msg_recv(&msg, s.raw, 0)
            guard n >= 0 else { throw ZMQError.last("zmq_msg_recv") }
            total += Int(n)
        }
        return total
    }
}

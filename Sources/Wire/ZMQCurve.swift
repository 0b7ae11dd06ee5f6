import CZeroMQ
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// libzmq's CURVE security (zmq_curve(7)) and ZAP (ZeroMQ RFC 27): the half of the libzmq layer that
/// authenticates and encrypts links. Kept apart from ZMQ.swift so the plain data path reads as before.

/// A CURVE key pair, each key 32 bytes written as 40 characters of Z85 (ZeroMQ RFC 32), the form libzmq's
/// `zmq_curve_keypair` produces and key files hold.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh pair from libzmq (libsodium's random source).
    public static func generate() throws -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41), sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw ZMQError.last("zmq_curve_keypair") }
        return CurveKeyPair(publicKey: String(cString: pub), secretKey: String(cString: sec))
    }

    /// The public key that belongs to `secretKey`, nil when `secretKey` is not a Z85 key: how a key file pair is
    /// checked for belonging together without trusting either.
    public static func publicKey(of secretKey: String) -> String? {
        guard decode(secretKey) != nil else { return nil }
        var pub = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&pub, secretKey) == 0 else { return nil }
        return String(cString: pub)
    }

    /// The 32 key bytes of a 40-character Z85 key; nil for anything else.
    public static func decode(_ z85: String) -> [UInt8]? {
        let chars = Array(z85.utf8)
        guard chars.count == 40, chars.allSatisfy({ z85Alphabet.contains($0) }) else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&out, z85) != nil else { return nil }
        return out
    }

    /// The Z85 text of 32 key bytes.
    public static func encode(_ bytes: [UInt8]) -> String {
        precondition(bytes.count == 32, "a CURVE key has 32 bytes")
        var out = [CChar](repeating: 0, count: 41)
        _ = zmq_z85_encode(&out, bytes, bytes.count)
        return String(cString: out)
    }

    /// What CURVE adds to every frame on the wire (its MESSAGE command: 8-byte name, 8-byte nonce, 16-byte MAC,
    /// 1 flags byte), with room to spare. libzmq checks ZMQ_MAXMSGSIZE against the encrypted frame, so a receiver's
    /// limit must allow for it or the largest legal frame drops the connection.
    public static let messageOverheadBytes = 64

    static let z85Alphabet = Set(Array("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8))
}

extension Socket {
    /// Makes this socket a CURVE server with `secretKey`: every peer must complete a CURVE handshake, and the
    /// context's ZAP handler (`ZAPHandler`) decides which client keys are admitted. Set before bind.
    public func makeCurveServer(secretKey: String, domain: String) throws {
        try setInt(ZMQ_CURVE_SERVER, 1)
        try setBytes(ZMQ_CURVE_SECRETKEY, try Socket.keyBytes(secretKey, "secret key"))
        try setBytes(ZMQ_ZAP_DOMAIN, Array(domain.utf8))
    }

    /// Makes this socket a CURVE client that authenticates as `pair` and talks only to the server holding the
    /// secret of `serverKey` (a man in the middle cannot complete the handshake). Set before connect.
    public func makeCurveClient(_ pair: CurveKeyPair, serverKey: String) throws {
        try setBytes(ZMQ_CURVE_SERVERKEY, try Socket.keyBytes(serverKey, "server key"))
        try setBytes(ZMQ_CURVE_PUBLICKEY, try Socket.keyBytes(pair.publicKey, "public key"))
        try setBytes(ZMQ_CURVE_SECRETKEY, try Socket.keyBytes(pair.secretKey, "secret key"))
    }

    static func keyBytes(_ z85: String, _ what: String) throws -> [UInt8] {
        guard let bytes = CurveKeyPair.decode(z85) else { throw ZMQError(call: "CURVE \(what) '\(z85.prefix(48))' is not 40 characters of Z85", errno: EINVAL) }
        return bytes
    }
}

extension Message {
    /// The ZAP user id libzmq attached to the connection this message arrived on: what the ZAP handler said the
    /// peer's key is. nil on a socket without ZAP.
    public var userId: String? {
        guard let p = zmq_msg_gets(msg, "User-Id") else { return nil }
        return String(cString: p)
    }
}

/// The ZAP handler of one ZeroMQ context (RFC 27, on `inproc://zeromq.zap.01`): admits a CURVE client only when
/// its public key is listed, and gives the connection that key's user id, which every message on it then carries
/// (`Message.userId`), so a receiver checks who sent it instead of trusting what the message claims. Every other
/// key is refused (status 400), counted, and recorded (and reported to `onRefusal`) once per address and key. Runs on a thread of its own: libzmq asks it
/// during a handshake, whatever the owner's thread is doing.
public final class ZAPHandler: @unchecked Sendable {
    /// A refused connection attempt.
    public struct Refusal: Sendable, Equatable, Codable {
        /// The peer's IP address as libzmq gives it.
        public let address: String
        /// The client's CURVE public key (Z85), or the mechanism when it was not CURVE.
        public let publicKey: String

        public init(address: String, publicKey: String) {
            self.address = address
            self.publicKey = publicKey
        }
    }

    public static let endpoint = "inproc://zeromq.zap.01"
    private let lock = NSLock()
    private var stopped = false
    private var refused: [Refusal] = []
    private var attempts = 0
    /// Distinct refusals kept (and logged): a peer that retries for ever must not grow this process or its log.
    public static let mostRecordedRefusals = 256
    private let finished = DispatchSemaphore(value: 0)
    private var running = true

    /// Binds the context's handler socket (before any CURVE server binds, so no handshake goes unasked) and
    /// starts answering. `admitted` maps a Z85 public key to the user id its connections get; `onRefusal` is
    /// called on the handler's thread for every refused attempt (logging).
    public init(context: ZContext, admitted: [String: String], onRefusal: @escaping @Sendable (Refusal) -> Void) throws {
        let socket = try Socket(context, .rep)
        try socket.bind(ZAPHandler.endpoint)
        var byKey: [[UInt8]: String] = [:]
        for (key, user) in admitted {
            guard let bytes = CurveKeyPair.decode(key) else { throw ZMQError(call: "ZAP: admitted key '\(key.prefix(48))' is not Z85", errno: EINVAL) }
            byKey[bytes] = user
        }
        let table = byKey
        Thread { [self] in
            defer { socket.close(); finished.signal() }
            while !isStopped {
                guard (try? Socket.poll([socket], timeoutMs: 50))?.isEmpty == false,
                      let frames = try? socket.receive(nonBlocking: true) else { continue }
                let reply = answer(frames.map(\.array), table: table, onRefusal: onRefusal)
                try? socket.send(reply.map { Message(bytes: $0) })
            }
        }.start()
    }

    /// The reply frames for one request: version, request id, status code, status text, user id, metadata.
    private func answer(_ f: [[UInt8]], table: [[UInt8]: String], onRefusal: (Refusal) -> Void) -> [[UInt8]] {
        func reply(_ id: [UInt8], _ code: String, _ text: String, _ user: String) -> [[UInt8]] {
            [Array("1.0".utf8), id, Array(code.utf8), Array(text.utf8), Array(user.utf8), []]
        }
        guard f.count >= 6, f[0] == Array("1.0".utf8) else { return reply(f.count > 1 ? f[1] : [], "500", "malformed ZAP request", "") }
        let address = String(decoding: f[3], as: UTF8.self)
        let mechanism = String(decoding: f[5], as: UTF8.self)
        if mechanism == "CURVE", f.count >= 7, f[6].count == 32, let user = table[f[6]] {
            return reply(f[1], "200", "OK", user)
        }
        let refusal = Refusal(address: address, publicKey: mechanism == "CURVE" && f.count >= 7 && f[6].count == 32
                              ? CurveKeyPair.encode(f[6]) : "(mechanism \(mechanism))")
        lock.lock()
        attempts += 1
        let new = !refused.contains(refusal) && refused.count < ZAPHandler.mostRecordedRefusals
        if new { refused.append(refusal) }
        lock.unlock()
        if new { onRefusal(refusal) }
        return reply(f[1], "400", "unknown CURVE key", "")
    }

    private var isStopped: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopped
    }

    /// The distinct (address, key) pairs refused so far (at most `mostRecordedRefusals`), each once.
    public var refusals: [Refusal] {
        lock.lock(); defer { lock.unlock() }
        return refused
    }

    /// Every refused connection so far (one rogue makes several: each of its sockets, each time it starts).
    public var refusedAttempts: Int {
        lock.lock(); defer { lock.unlock() }
        return attempts
    }

    /// Stops the thread and waits until its socket is closed (the context cannot terminate before that).
    public func stop() {
        lock.lock()
        let wasRunning = running
        stopped = true; running = false
        lock.unlock()
        if wasRunning { finished.wait() }
    }

    deinit { stop() }
}

/// Handshake events of one socket (`zmq_socket_monitor`), read without blocking: how a CURVE client learns that
/// the server refused its key instead of retrying silently for ever.
public final class SocketMonitor {
    public struct Event: Sendable, Equatable {
        public let event: Int32
        /// For a ZAP refusal the status code (400); for a protocol failure libzmq's error code.
        public let value: UInt32
        public let endpoint: String

        public var isAuthenticationFailure: Bool { event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH }
        public var isProtocolFailure: Bool { event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL }
        public var isSuccess: Bool { event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED }
    }

    let pair: Socket

    /// Watches `socket`'s handshakes: successes and every kind of failure.
    public init(_ socket: Socket) throws {
        let endpoint = "inproc://attnres.monitor.\(UInt(bitPattern: socket.raw))"
        let events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
            | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
        guard zmq_socket_monitor(socket.raw, endpoint, events) == 0 else { throw ZMQError.last("zmq_socket_monitor") }
        pair = try Socket(socket.context, .pair)
        try pair.connect(endpoint)
    }

    /// The next event, nil when none is waiting.
    public func next() throws -> Event? {
        guard let frames = try pair.receive(nonBlocking: true), frames.count >= 2, frames[0].count >= 6 else { return nil }
        let b = frames[0].bytes
        let event = Int32(b.loadUnaligned(as: UInt16.self))
        let value = b.loadUnaligned(fromByteOffset: 2, as: UInt32.self)
        return Event(event: event, value: value, endpoint: String(decoding: frames[1].bytes, as: UTF8.self))
    }

    /// Waits up to `timeoutMs` for an event; true when one is waiting (read it with `next`).
    public func wait(timeoutMs: Int) throws -> Bool { try !Socket.poll([pair], timeoutMs: timeoutMs).isEmpty }

    public func close() { pair.close() }
}

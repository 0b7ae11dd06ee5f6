import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Numerics
import Pipeline
import Wire

/// `attnres bench wire`: the worker data path (frame encode, send, receive, decode, validate, count) against
/// a raw libzmq PUSH/PULL loop, same sizes, same transport, same run. Sender and receiver are two threads with
/// their own ZeroMQ contexts, so bytes cross the kernel exactly as between two worker processes.
public enum WireBenchmark {
    public struct Row: Sendable {
        public let transport: TransportKind
        public let bytes: Int
        public let rawGBps: Double
        public let oursGBps: Double
        /// Slowest and fastest raw trial: the machine's own noise, to read the ratio against.
        public let rawSpread: ClosedRange<Double>
        public let oursSpread: ClosedRange<Double>
        /// Median over trials of (ours / raw) for the back-to-back pair of that trial: robust to slow drift.
        public let ratio: Double
        /// `--curve`: the same data path over a CURVE-encrypted, ZAP-authenticated link, and the median of its paired
        /// ratio to the plain data path (nil without `--curve`).
        public var curveGBps: Double? = nil
        public var curveSpread: ClosedRange<Double>? = nil
        public var curveRatio: Double? = nil
    }

    /// The largest tensor a trial sends: a 1 GiB buffer is already far past where throughput levels off.
    public static let largestSize = 1 << 30
    /// The most trials per cell and bytes per trial: beyond them a benchmark runs for days.
    public static let mostTrials = 10_000
    public static let mostBytesPerTrial = 1 << 40

    /// Checks the options of a benchmark (their flags named as `attnres bench wire` spells them): at least one
    /// transport; sizes whole float32 tensors of 4 B … `largestSize`; 1 … `mostTrials` trials (a median needs one);
    /// 1 B … `mostBytesPerTrial` per trial.
    public static func check(transports: [TransportKind], sizes: [Int], trials: Int, bytesPerTrial: Int) throws {
        guard !transports.isEmpty else { throw RunOptionError(flag: "--transport", value: "(none)", problem: "give ipc and/or tcp") }
        guard !sizes.isEmpty else { throw RunOptionError(flag: "--sizes", value: "(none)", problem: "give at least one tensor size") }
        for size in sizes {
            guard size >= 4, size <= largestSize else {
                throw RunOptionError(flag: "--sizes", value: "\(size)", problem: "a tensor size must be in 4 B…\(largestSize) B (1 GiB)")
            }
            guard size % 4 == 0 else {
                throw RunOptionError(flag: "--sizes", value: "\(size)", problem: "a tensor size must be a multiple of 4 B (float32 elements)")
            }
        }
        guard trials >= 1, trials <= mostTrials else {
            throw RunOptionError(flag: "--trials", value: "\(trials)", problem: "must be in 1…\(mostTrials)")
        }
        guard bytesPerTrial >= 1, bytesPerTrial <= mostBytesPerTrial else {
            throw RunOptionError(flag: "--bytes-per-trial", value: "\(bytesPerTrial)", problem: "must be in 1…\(mostBytesPerTrial) (1 TiB)")
        }
    }

    /// Runs `trials` alternating raw/ours trials per (transport, size), each moving about `bytesPerTrial`.
    /// `curve`: each trial also runs the data path over CURVE, for its throughput as a ratio to plain.
    public static func run(transports: [TransportKind], sizes: [Int], trials: Int, bytesPerTrial: Int, curve: Bool = false,
                           progress: (String) -> Void = { _ in }) throws -> [Row] {
        try check(transports: transports, sizes: sizes, trials: trials, bytesPerTrial: bytesPerTrial)
        // The allocator settings of a worker (both sides share them: one process).
        AllocatorTuning.apply()
        var rows: [Row] = []
        for transport in transports {
            for size in sizes {
                let count = max(16, bytesPerTrial / size)
                guard let buffer = calloc(size, 1) else {
                    throw RunOptionError(flag: "--sizes", value: "\(size)", problem: "cannot allocate a buffer of this size")
                }
                defer { free(buffer) }
                var raw: [Double] = [], ours: [Double] = [], secured: [Double] = []
                let rawPair = try Pair(transport), oursPair = try Pair(transport)
                let curvePair = curve ? try Pair(transport, curve: true) : nil
                // One warm-up each, then alternate so drift hits both sides equally.
                _ = try rawTrial(rawPair, buffer: buffer, size: size, count: count)
                _ = try oursTrial(oursPair, buffer: buffer, size: size, count: count)
                if let curvePair { _ = try oursTrial(curvePair, buffer: buffer, size: size, count: count) }
                for t in 0..<trials {
                    progress("\(transport.rawValue) \(size) B: trial \(t + 1)/\(trials)")
                    // Alternate which side goes first so slow drift cannot favour either; the CURVE trial is always
                    // next to the plain data path trial it is paired with.
                    if t % 2 == 0 {
                        if let curvePair { secured.append(try oursTrial(curvePair, buffer: buffer, size: size, count: count)) }
                        ours.append(try oursTrial(oursPair, buffer: buffer, size: size, count: count))
                        raw.append(try rawTrial(rawPair, buffer: buffer, size: size, count: count))
                    } else {
                        raw.append(try rawTrial(rawPair, buffer: buffer, size: size, count: count))
                        ours.append(try oursTrial(oursPair, buffer: buffer, size: size, count: count))
                        if let curvePair { secured.append(try oursTrial(curvePair, buffer: buffer, size: size, count: count)) }
                    }
                }
                var row = Row(transport: transport, bytes: size, rawGBps: median(raw), oursGBps: median(ours),
                              rawSpread: raw.min()!...raw.max()!, oursSpread: ours.min()!...ours.max()!,
                              ratio: median(zip(ours, raw).map { $0 / $1 }))
                if curve {
                    row.curveGBps = median(secured)
                    row.curveSpread = secured.min()!...secured.max()!
                    row.curveRatio = median(zip(secured, ours).map { $0 / $1 })
                }
                rows.append(row)
            }
        }
        return rows
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A connected PUSH → PULL pair, each in its own context; `curve`: the PULL a CURVE server whose ZAP handler
    /// admits only the PUSH's key, as a worker's inbox and its neighbour's sender are set up.
    final class Pair {
        let sendContext = ZContext(), receiveContext = ZContext()
        let push: Socket, pull: Socket
        let directory: String?
        let zap: ZAPHandler?

        init(_ transport: TransportKind, curve: Bool = false) throws {
            pull = try Socket(receiveContext, .pull)
            push = try Socket(sendContext, .push)
            try pull.setUnboundedQueues()
            try push.setUnboundedQueues()
            if curve {
                let server = try CurveKeyPair.generate(), client = try CurveKeyPair.generate()
                zap = try ZAPHandler(context: receiveContext, admitted: [client.publicKey: "rank-0"]) { _ in }
                try pull.makeCurveServer(secretKey: server.secretKey, domain: "attnres-bench")
                try push.makeCurveClient(client, serverKey: server.publicKey)
            } else {
                zap = nil
            }
            switch transport {
            case .ipc:
                // A run directory records its owner, so one left by a killed benchmark is swept by the next run.
                let dir = try RunDirectory.create()
                directory = dir
                do { try pull.bind("ipc://\(dir)/wire") } catch {
                    try? FileManager.default.removeItem(atPath: dir)
                    throw error
                }
            case .tcp:
                directory = nil
                try pull.bind("tcp://127.0.0.1:*")
            }
            try push.connect(pull.lastEndpoint)
        }

        deinit {
            push.close()
            pull.close()
            zap?.stop()
            if let directory { try? FileManager.default.removeItem(atPath: directory) }
        }
    }

    /// GB/s from the first send until the receiver has the last message.
    static func timed(_ pair: Pair, count: Int, size: Int, send: () throws -> Void, receive: @escaping () throws -> Void) throws -> Double {
        let done = DispatchSemaphore(value: 0)
        final class Outcome: @unchecked Sendable { var failure: Error? }  // written before signal, read after wait
        let outcome = Outcome()
        let receiver = Thread {
            do { try receive() } catch { outcome.failure = error }
            done.signal()
        }
        let start = monotonicSeconds()
        receiver.start()
        try send()
        done.wait()
        if let failure = outcome.failure { throw failure }
        return Double(count * size) / (monotonicSeconds() - start) / 1e9
    }

    static func rawTrial(_ pair: Pair, buffer: UnsafeMutableRawPointer, size: Int, count: Int) throws -> Double {
        try timed(pair, count: count, size: size,
                  send: { try RawZMQ.sendLoop(pair.push, buffer: buffer, bytes: size, count: count) },
                  receive: {
                      let got = try RawZMQ.receiveLoop(pair.pull, count: count)
                      guard got == size * count else { throw ClusterError.measuredDiffers("raw loop received \(got) bytes") }
                  })
    }

    /// The worker's path: a block tensor in a v1 data message, decoded, validated and counted on arrival.
    static func oursTrial(_ pair: Pair, buffer: UnsafeMutableRawPointer, size: Int, count: Int) throws -> Double {
        let d = UInt32(size / 4)
        let descriptor = TensorDescriptor(role: .block, block: 1, partialLayers: 0, dims: [1, 1, d])
        return try timed(pair, count: count, size: size, send: {
            for i in 0..<count {
                let header = FrameHeader(kind: .forward, step: 0, microbatch: UInt32(i), hop: 0, source: 0, destination: 1, tensors: [descriptor])
                try DataMessage(header: header, payloads: [Message(borrowing: buffer, count: size)]).send(on: pair.push)
            }
        }, receive: {
            var counters = Counters()
            for _ in 0..<count {
                guard let frames = try pair.pull.receive() else { continue }
                let m = try DataMessage.decode(frames)
                counters.countReceived(header: m.header, payloads: m.payloads)
            }
            let got = counters.received.values.reduce(0) { $0 + $1.bytes }
            guard got == size * count else { throw ClusterError.measuredDiffers("data path received \(got) bytes") }
        })
    }
}

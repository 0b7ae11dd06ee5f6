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
    }

    /// Runs `trials` alternating raw/ours trials per (transport, size), each moving about `bytesPerTrial`.
    public static func run(transports: [TransportKind], sizes: [Int], trials: Int, bytesPerTrial: Int,
                           progress: (String) -> Void = { _ in }) throws -> [Row] {
        // The allocator settings of a worker (both sides share them: one process).
        AllocatorTuning.apply()
        var rows: [Row] = []
        for transport in transports {
            for size in sizes {
                let count = max(16, bytesPerTrial / size)
                let buffer = calloc(size, 1)!
                defer { free(buffer) }
                var raw: [Double] = [], ours: [Double] = []
                let rawPair = try Pair(transport), oursPair = try Pair(transport)
                // One warm-up each, then alternate so drift hits both sides equally.
                _ = try rawTrial(rawPair, buffer: buffer, size: size, count: count)
                _ = try oursTrial(oursPair, buffer: buffer, size: size, count: count)
                for t in 0..<trials {
                    progress("\(transport.rawValue) \(size) B: trial \(t + 1)/\(trials)")
                    // Alternate which side goes first so slow drift cannot favour either.
                    if t % 2 == 0 {
                        raw.append(try rawTrial(rawPair, buffer: buffer, size: size, count: count))
                        ours.append(try oursTrial(oursPair, buffer: buffer, size: size, count: count))
                    } else {
                        ours.append(try oursTrial(oursPair, buffer: buffer, size: size, count: count))
                        raw.append(try rawTrial(rawPair, buffer: buffer, size: size, count: count))
                    }
                }
                rows.append(Row(transport: transport, bytes: size, rawGBps: median(raw), oursGBps: median(ours),
                                rawSpread: raw.min()!...raw.max()!, oursSpread: ours.min()!...ours.max()!,
                                ratio: median(zip(ours, raw).map { $0 / $1 })))
            }
        }
        return rows
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// A connected PUSH → PULL pair, each in its own context.
    final class Pair {
        let sendContext = ZContext(), receiveContext = ZContext()
        let push: Socket, pull: Socket
        let directory: String?

        init(_ transport: TransportKind) throws {
            pull = try Socket(receiveContext, .pull)
            push = try Socket(sendContext, .push)
            try pull.setUnboundedQueues()
            try push.setUnboundedQueues()
            switch transport {
            case .ipc:
                var template = Array("/tmp/attnres-bench-XXXXXX".utf8CString)
                let dir = String(cString: mkdtemp(&template)!)
                directory = dir
                try pull.bind("ipc://\(dir)/wire")
            case .tcp:
                directory = nil
                try pull.bind("tcp://127.0.0.1:*")
            }
            try push.connect(pull.lastEndpoint)
        }

        deinit {
            push.close()
            pull.close()
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

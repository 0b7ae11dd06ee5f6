import Foundation
import Pipeline

/// One timed record of a worker (seconds on CLOCK_MONOTONIC, shared by every process on one host).
public struct TraceRecord: Codable, Sendable {
    public enum Kind: String, Codable, Sendable { case forward, backward, optimizer, send, arrive, wait }
    public var kind: Kind
    public var start: Double
    public var end: Double
    public var step: Int
    public var chunk: Int
    public var microbatch: Int
    /// For send/arrive/wait: the message's hop and direction, peer rank and payload bytes.
    public var hop: Int = -1
    public var backward: Bool = false
    public var peer: Int = -1
    public var bytes: Int = 0
    /// For forward and backward (compute mode, `SpanClock`): seconds of the span spent inside the model, and
    /// inside depth attention within it; nil where not measured (shape mode; depth for the standard residual; a
    /// worker that does not report them). depth ≤ model ≤ the span's duration.
    public var modelSeconds: Double?
    public var depthSeconds: Double?

    enum CodingKeys: String, CodingKey {
        case kind, start, end, step, chunk, microbatch, hop, backward, peer, bytes
        case modelSeconds = "model_seconds", depthSeconds = "depth_seconds"
    }

    public init(kind: Kind, start: Double, end: Double, step: Int, chunk: Int, microbatch: Int, hop: Int = -1,
                backward: Bool = false, peer: Int = -1, bytes: Int = 0, modelSeconds: Double? = nil, depthSeconds: Double? = nil) {
        self.kind = kind; self.start = start; self.end = end; self.step = step; self.chunk = chunk
        self.microbatch = microbatch; self.hop = hop; self.backward = backward; self.peer = peer; self.bytes = bytes
        self.modelSeconds = modelSeconds; self.depthSeconds = depthSeconds
    }

    /// What is wrong with the record's model and depth times, as (field, problem); nil when they are absent or in
    /// range: finite, ≥ 0, on a forward or backward, depth ≤ model ≤ the span's duration.
    var partProblem: (field: String, problem: String)? {
        // Both parts and the span are read from one clock; 1 µs covers the rounding of the subtractions.
        let span = end - start
        for (field, value, within, what) in [("model_seconds", modelSeconds, span, "its span"),
                                             ("depth_seconds", depthSeconds, modelSeconds ?? span, modelSeconds == nil ? "its span" : "model_seconds")] {
            guard let v = value else { continue }
            guard kind == .forward || kind == .backward else { return (field, "on a \(kind.rawValue) record (forward and backward only)") }
            guard v.isFinite, v >= 0 else { return (field, "\(v) is not a finite number ≥ 0") }
            guard v <= within + 1e-6 else { return (field, "\(v) s is longer than \(what) (\(within) s)") }
        }
        return nil
    }
}

/// Builds the Chrome trace-event file (Perfetto opens it) from every worker's records, and the measured bubble.
///
/// Per rank (pid = rank): tid 0 compute (forward, backward, optimizer; chunk and microbatch in args), tid 1 send,
/// tid 2 receive: transfer (from the send call to the message's arrival in the receiver's inbox), tid 3 receive:
/// waiting (the rank blocked with nothing to run until the message arrived). Flow arrows (`s`/`f`) join each send
/// to its arrival; counter tracks give cumulative payload bytes per link.
public enum ChromeTrace {
    struct MessageKey: Hashable { let step: Int; let backward: Bool; let hop: Int; let microbatch: Int }

    public static func events(_ records: [Int: [TraceRecord]], ranks: Int) -> [[String: Any]] {
        let t0 = records.values.flatMap { $0.map(\.start) }.min() ?? 0
        func us(_ t: Double) -> Double { ((t - t0) * 1e6).rounded() }
        var out: [[String: Any]] = []
        for r in 0..<ranks {
            out.append(["name": "process_name", "ph": "M", "pid": r, "args": ["name": "rank \(r)"]])
            out.append(["name": "process_sort_index", "ph": "M", "pid": r, "args": ["sort_index": r]])
            for (tid, name) in [(0, "compute"), (1, "send"), (2, "receive: transfer"), (3, "receive: waiting")] {
                out.append(["name": "thread_name", "ph": "M", "pid": r, "tid": tid, "args": ["name": name]])
                out.append(["name": "thread_sort_index", "ph": "M", "pid": r, "tid": tid, "args": ["sort_index": tid]])
            }
        }
        var sends: [MessageKey: (rank: Int, t: Double)] = [:]
        for (r, list) in records {
            for e in list where e.kind == .send { sends[MessageKey(step: e.step, backward: e.backward, hop: e.hop, microbatch: e.microbatch)] = (r, e.start) }
        }
        var flowId = 0
        var linkBytes: [String: Int] = [:]
        for (r, list) in records.sorted(by: { $0.key < $1.key }) {
            for e in list.sorted(by: { $0.start < $1.start }) {
                let args: [String: Any] = ["step": e.step + 1, "chunk": e.chunk, "microbatch": e.microbatch]
                switch e.kind {
                case .forward, .backward, .optimizer:
                    let name = e.kind == .optimizer ? "optimizer" : "\(e.chunk)\(e.kind == .forward ? "F" : "B")\(e.microbatch)"
                    // model_us, depth_us: the span's time inside the model and inside depth attention, to 0.1 µs
                    // (the calibration splits each span on them)
                    var computeArgs = args
                    if let m = e.modelSeconds { computeArgs["model_us"] = (m * 1e7).rounded() / 10 }
                    if let d = e.depthSeconds { computeArgs["depth_us"] = (d * 1e7).rounded() / 10 }
                    out.append(["name": name, "cat": e.kind.rawValue, "ph": "X", "pid": r, "tid": 0, "ts": us(e.start),
                                "dur": max(1, us(e.end) - us(e.start)), "args": computeArgs])
                case .send:
                    let dir = e.backward ? "grad" : "act"
                    out.append(["name": "send \(dir) hop \(e.hop) mb \(e.microbatch) → rank \(e.peer)", "cat": "send", "ph": "X", "pid": r, "tid": 1,
                                "ts": us(e.start), "dur": max(1, us(e.end) - us(e.start)), "args": args.merging(["bytes": e.bytes]) { a, _ in a }])
                    let link = "bytes \(r)→\(e.peer) \(e.backward ? "backward" : "forward")"
                    linkBytes[link, default: 0] += e.bytes
                    out.append(["name": link, "ph": "C", "pid": r, "ts": us(e.end), "args": ["bytes": linkBytes[link]!]])
                case .arrive:
                    let key = MessageKey(step: e.step, backward: e.backward, hop: e.hop, microbatch: e.microbatch)
                    guard let s = sends[key] else { continue }
                    flowId += 1
                    out.append(["name": "transfer hop \(e.hop) mb \(e.microbatch) from rank \(s.rank)", "cat": "transfer", "ph": "X",
                                "pid": r, "tid": 2, "ts": us(s.t), "dur": max(1, us(e.start) - us(s.t)), "args": args.merging(["bytes": e.bytes]) { a, _ in a }])
                    out.append(["name": "message", "cat": "flow", "ph": "s", "id": flowId, "pid": s.rank, "tid": 1, "ts": us(s.t)])
                    out.append(["name": "message", "cat": "flow", "ph": "f", "bp": "e", "id": flowId, "pid": r, "tid": 2, "ts": us(e.start)])
                case .wait:
                    out.append(["name": "waiting for hop \(e.hop) \(e.backward ? "grad" : "act") mb \(e.microbatch)", "cat": "wait", "ph": "X",
                                "pid": r, "tid": 3, "ts": us(e.start), "dur": max(1, us(e.end) - us(e.start)), "args": args])
                }
            }
        }
        return out
    }

    /// Writes the trace file; `topology` (the run's configuration) goes under `otherData.topology`, so
    /// `attnres simulate --calibrate` knows which model and pipeline the timings belong to.
    public static func write(_ records: [Int: [TraceRecord]], ranks: Int, to path: String, topology: Topology? = nil) throws {
        var doc: [String: Any] = ["traceEvents": events(records, ranks: ranks), "displayTimeUnit": "ms"]
        if let topology {
            doc["otherData"] = ["topology": try JSONSerialization.jsonObject(with: try JSONEncoder().encode(topology))]
        }
        let data = try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys])
        try data.write(to: URL(fileURLWithPath: path))
    }

    /// Idle fraction of each rank: per step, 1 − (its forward+backward time) / (the step's pipeline span from the
    /// first forward anywhere to the last backward anywhere), averaged over steps.
    public static func bubbleFractions(_ records: [Int: [TraceRecord]], ranks: Int, steps: Int) -> [Double] {
        var sums = [Double](repeating: 0, count: ranks)
        for s in 0..<steps {
            let compute = records.mapValues { $0.filter { ($0.kind == .forward || $0.kind == .backward) && $0.step == s } }
            let all = compute.values.flatMap { $0 }
            guard let start = all.map(\.start).min(), let end = all.map(\.end).max(), end > start else { continue }
            for r in 0..<ranks {
                let busy = (compute[r] ?? []).reduce(0) { $0 + ($1.end - $1.start) }
                sums[r] += 1 - busy / (end - start)
            }
        }
        return sums.map { $0 / Double(max(1, steps)) }
    }

    /// An SVG timeline of the compute tracks (forward blue, backward green, optimizer grey): the white gaps are the
    /// pipeline bubbles.
    public static func svg(_ records: [Int: [TraceRecord]], ranks: Int, title: String, step: Int) -> String {
        let spans = records.mapValues { $0.filter { [.forward, .backward, .optimizer].contains($0.kind) && $0.step == step } }
        let all = spans.values.flatMap { $0 }
        let t0 = all.map(\.start).min() ?? 0, t1 = all.map(\.end).max() ?? 1
        let width = 1100.0, left = 70.0, row = 34.0, top = 50.0
        let scale = (width - left - 20) / max(t1 - t0, 1e-9)
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(top + row * Double(ranks) + 60))\" font-family=\"sans-serif\" font-size=\"11\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"10\" y=\"20\" font-size=\"14\">\(title)</text>\n"
        s += "<text x=\"10\" y=\"38\" fill=\"#555\">forward (blue), backward (green), optimizer (grey); white gaps are pipeline bubbles (the rank is waiting for a neighbour)</text>\n"
        for r in 0..<ranks {
            let y = top + row * Double(r)
            s += "<text x=\"10\" y=\"\(y + row / 2 + 4)\">rank \(r)</text>\n"
            s += "<rect x=\"\(left)\" y=\"\(y + 3)\" width=\"\(width - left - 20)\" height=\"\(row - 6)\" fill=\"none\" stroke=\"#ddd\"/>\n"
            for e in spans[r] ?? [] {
                let x = left + (e.start - t0) * scale, w = max(0.5, (e.end - e.start) * scale)
                let color = e.kind == .forward ? "#4a7fd6" : e.kind == .backward ? "#3fa34d" : "#999999"
                s += "<rect x=\(String(format: "\"%.2f\"", x)) y=\"\(y + 4)\" width=\(String(format: "\"%.2f\"", w)) height=\"\(row - 8)\" fill=\"\(color)\"><title>\(e.kind.rawValue) chunk \(e.chunk) mb \(e.microbatch)</title></rect>\n"
                if w > 22 && e.kind != .optimizer {
                    s += "<text x=\(String(format: "\"%.2f\"", x + 2)) y=\"\(y + row / 2 + 4)\" fill=\"white\">\(e.chunk)\(e.kind == .forward ? "F" : "B")\(e.microbatch)</text>\n"
                }
            }
        }
        let y = top + row * Double(ranks) + 20
        s += "<text x=\"\(left)\" y=\"\(y)\">0 ms</text><text x=\"\(width - 90)\" y=\"\(y)\">\(String(format: "%.1f ms", (t1 - t0) * 1000))</text>\n"
        return s + "</svg>\n"
    }
}

import Foundation
import Pipeline

/// Why a trace cannot be calibrated from or measured.
public enum CalibrationError: Error, CustomStringConvertible {
    case unreadable(file: String, String)
    case notATrace(file: String, String)
    case tooFewSpans(file: String, String)

    public var description: String {
        switch self {
        case let .unreadable(f, why): return "\(f): cannot read the trace: \(why)"
        case let .notATrace(f, why): return "\(f): not an `attnres run --mode compute --trace` file: \(why)"
        case let .tooFewSpans(f, why): return "\(f): too few timed spans to calibrate: \(why)"
        }
    }
}

/// A real run's Chrome trace (`attnres run --mode compute --trace FILE.json`) read back: its topology (stored under
/// `otherData.topology`), compute spans, transfers and the step times they give.
public struct MeasuredTrace: Sendable {
    public let file: String
    public let topology: Topology

    public struct ComputeSpan: Sendable {
        public let rank: Int; public var step: Int; public let chunk, microbatch: Int; public let kind: String; public let seconds: Double
        /// The parts of `seconds` spent in the model and in depth attention (the span's `model_us`, `depth_us`),
        /// nil where the trace has none.
        public var modelSeconds: Double? = nil, depthSeconds: Double? = nil
    }
    public struct Transfer: Sendable {
        public let src, dst: Int; public var step: Int; public let hop, microbatch: Int
        public let bytes: Int
        public let seconds: Double
        /// Whether the receiver was blocked waiting for it (then its recorded arrival is exact, not one action late).
        public let waitedFor: Bool
    }

    public let compute: [ComputeSpan]
    public let transfers: [Transfer]
    /// Durations of the send calls (seconds) and their steps.
    public let sends: [(rank: Int, step: Int, seconds: Double)]
    /// Per rank: every span that accounts for its time (compute, optimizer, send calls, waits), seconds.
    public let activity: [Int: [(step: Int, start: Double, end: Double)]]
    /// One span of a rank's timeline: what it was and, for a send or a compute, which message it sent or consumed.
    public struct TimelineSpan: Sendable {
        public enum Kind: String, Sendable { case forward, backward, optimizer, send, wait }
        public let kind: Kind
        public var step: Int
        public let start: Double, end: Double
        /// forward, backward: the chunk; send: the hop (-1 otherwise).
        public let chunk: Int, hop: Int
    }
    /// Per rank: its spans in the order they started.
    public let timeline: [Int: [TimelineSpan]]
    /// The steps a run stands for: after the warm-up (`warmUpSteps`: the first quarter, at least the first step,
    /// when there are three or more: the first steps allocate, warm caches, and on this machine run up to 30 %
    /// slower for about the first 30), without the slowest and the fastest tenth (`CalibrationMath.trimmedMean`'s cut), so that a step slowed by
    /// another process does not decide the measurement. Calibration fits every cost over these same steps, with
    /// plain means: means add up along a step as its durations do, which medians do not.
    public let typicalSteps: Set<Int>

    public init(file: String) throws {
        self.file = file
        let data: Data
        do { data = Data(try InputFile.bytes(file)) } catch let e as InputFileError { throw CalibrationError.unreadable(file: file, e.problem) }
        guard let doc = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw CalibrationError.notATrace(file: file, "not a JSON object")
        }
        guard let events = doc["traceEvents"] as? [[String: Any]] else { throw CalibrationError.notATrace(file: file, "no traceEvents array") }
        guard let other = doc["otherData"] as? [String: Any], let topo = other["topology"] else {
            throw CalibrationError.notATrace(file: file, "no otherData.topology (traces written before attnres stored it cannot be calibrated)")
        }
        do {
            topology = try JSONDecoder().decode(Topology.self, from: JSONSerialization.data(withJSONObject: topo))
        } catch {
            throw CalibrationError.notATrace(file: file, "otherData.topology: \(error)")
        }
        var compute: [ComputeSpan] = [], sends: [(rank: Int, step: Int, seconds: Double)] = []
        var transfers: [(src: Int, dst: Int, step: Int, hop: Int, mb: Int, bytes: Int, seconds: Double)] = []
        var waits: Set<[Int]> = []
        var stepStart: [Int: Double] = [:], stepEnd: [Int: Double] = [:]
        var activity: [Int: [(step: Int, start: Double, end: Double)]] = [:]
        var timeline: [Int: [TimelineSpan]] = [:]
        for e in events where (e["ph"] as? String) == "X" {
            guard let cat = e["cat"] as? String, let pid = e["pid"] as? Int, let ts = e["ts"] as? Double ?? (e["ts"] as? Int).map(Double.init),
                  let dur = e["dur"] as? Double ?? (e["dur"] as? Int).map(Double.init), let args = e["args"] as? [String: Any],
                  let step = args["step"] as? Int else { continue }
            let name = e["name"] as? String ?? ""
            let s = step - 1
            if let kind = TimelineSpan.Kind(rawValue: cat) {
                activity[pid, default: []].append((s, ts / 1e6, (ts + dur) / 1e6))
                // "send act|grad hop H mb M → rank D"
                let words = name.split(separator: " ")
                let hop = kind == .send && words.count >= 4 ? Int(words[3]) ?? -1 : -1
                timeline[pid, default: []].append(TimelineSpan(kind: kind, step: s, start: ts / 1e6, end: (ts + dur) / 1e6,
                                                               chunk: args["chunk"] as? Int ?? -1, hop: hop))
            }
            switch cat {
            case "forward", "backward", "optimizer":
                guard let chunk = args["chunk"] as? Int, let mb = args["microbatch"] as? Int else { continue }
                var span = ComputeSpan(rank: pid, step: s, chunk: chunk, microbatch: mb, kind: cat, seconds: dur / 1e6)
                // The span's time in the model and, within it, in depth attention: µs within the span (within
                // model_us for depth_us), 1 µs allowed for the rounding of both.
                var within = dur
                for key in ["model_us", "depth_us"] {
                    guard let raw = args[key] else { continue }
                    guard cat != "optimizer", let us = (raw as? NSNumber)?.doubleValue, us.isFinite, us >= 0, us <= within + 1 else {
                        throw CalibrationError.notATrace(file: file, "span '\(name)' of rank \(pid) at ts \(ts) µs: args.\(key) \(raw) is not a number of µs "
                                                         + (cat == "optimizer" ? "(an optimizer span has none)" : "within \(key == "depth_us" && within != dur ? "its model_us" : "the span's") \(within) µs"))
                    }
                    if key == "model_us" { span.modelSeconds = min(us, dur) / 1e6; within = us } else { span.depthSeconds = min(us, within) / 1e6 }
                }
                compute.append(span)
                if cat == "forward" { stepStart[s] = min(stepStart[s] ?? .infinity, ts) }
                stepEnd[s] = max(stepEnd[s] ?? 0, ts + dur)
            case "send":
                sends.append((pid, s, dur / 1e6))
            case "transfer":
                // "transfer hop H mb M from rank S"
                let words = name.split(separator: " ")
                guard words.count >= 8, let hop = Int(words[2]), let src = Int(words[7]), let mb = args["microbatch"] as? Int,
                      let bytes = args["bytes"] as? Int else { continue }
                transfers.append((src, pid, s, hop, mb, bytes, dur / 1e6))
            case "wait":
                // "waiting for hop H grad|act mb M"
                let words = name.split(separator: " ")
                guard words.count >= 6, let hop = Int(words[3]), let mb = args["microbatch"] as? Int else { continue }
                waits.insert([pid, s, hop, mb, words[4] == "grad" ? 1 : 0])
            default: continue
            }
        }
        let layout = topology.layout
        self.transfers = transfers.map { t in
            let backward = !(layout.rank(ofChunk: t.hop) == t.src && layout.rank(ofChunk: t.hop + 1) == t.dst)
            return Transfer(src: t.src, dst: t.dst, step: t.step, hop: t.hop, microbatch: t.mb, bytes: t.bytes, seconds: t.seconds,
                            waitedFor: waits.contains([t.dst, t.step, t.hop, t.mb, backward ? 1 : 0]))
        }
        self.compute = compute
        self.sends = sends
        self.activity = activity
        // In start order; spans that start together (a send issued as a compute starts, in a simulated trace whose
        // sends cost nothing) in end order, so a gap is charged to the span that really follows it.
        self.timeline = timeline.mapValues { $0.sorted { ($0.start, $0.end) < ($1.start, $1.end) } }
        let timed = stepStart.keys.sorted().compactMap { s in stepEnd[s].map { (step: s, seconds: ($0 - stepStart[s]!) / 1e6) } }
        let candidates = Array(timed.dropFirst(MeasuredTrace.warmUpSteps(timed.count)))
        let cut = candidates.count / 10
        typicalSteps = Set(candidates.sorted { $0.seconds < $1.seconds }[cut..<(candidates.count - cut)].map(\.step))
        typicalStepSeconds = CalibrationMath.trimmedMean(candidates.map(\.seconds))
        guard !compute.isEmpty else { throw CalibrationError.tooFewSpans(file: file, "no forward or backward spans (was the run in compute mode?)") }
    }

    /// The step time a run stands for: the mean over `typicalSteps` (a step: first forward anywhere to the last
    /// optimizer end anywhere; of merged runs, over all their typical steps).
    public let typicalStepSeconds: Double

    /// Several runs of one configuration as one trace, for a calibration that pools them: on a machine whose cores
    /// change speed by ±10 % from one second to the next (docs/step-time.md, "Noise"), one run's costs carry its
    /// seconds' speed into every prediction; runs spread over the session average it out. Run k's steps are
    /// renumbered after run k − 1's, each keeps its own warm-up and typical steps, and every span and transfer is
    /// kept. The runs must share one topology (the same model, pipeline, residual and cache).
    public init(merging runs: [MeasuredTrace]) throws {
        guard let first = runs.first else { throw CalibrationError.tooFewSpans(file: "(no trace)", "no traces to merge") }
        for r in runs.dropFirst() where r.topology != first.topology {
            throw CalibrationError.notATrace(file: r.file, "otherData.topology differs from \(first.file)'s: runs pooled for one calibration must share one configuration")
        }
        var compute: [ComputeSpan] = [], transfers: [Transfer] = [], sends: [(rank: Int, step: Int, seconds: Double)] = []
        var activity: [Int: [(step: Int, start: Double, end: Double)]] = [:], timeline: [Int: [TimelineSpan]] = [:]
        var typical: Set<Int> = [], typicalSum = 0.0, typicalCount = 0
        var offset = 0
        for r in runs {
            let last = (r.compute.map(\.step) + r.sends.map(\.step)).max() ?? -1
            compute += r.compute.map { var c = $0; c.step += offset; return c }
            transfers += r.transfers.map { var m = $0; m.step += offset; return m }
            sends += r.sends.map { ($0.rank, $0.step + offset, $0.seconds) }
            for (rank, a) in r.activity { activity[rank, default: []] += a.map { ($0.step + offset, $0.start, $0.end) } }
            for (rank, spans) in r.timeline { timeline[rank, default: []] += spans.map { var t = $0; t.step += offset; return t } }
            typical.formUnion(r.typicalSteps.map { $0 + offset })
            typicalSum += r.typicalStepSeconds * Double(r.typicalSteps.count); typicalCount += r.typicalSteps.count
            offset += last + 1
        }
        file = runs.map(\.file).joined(separator: ",")
        topology = first.topology
        self.compute = compute; self.transfers = transfers; self.sends = sends; self.activity = activity
        self.timeline = timeline; typicalSteps = typical
        typicalStepSeconds = typicalCount > 0 ? typicalSum / Double(typicalCount) : 0
    }

    /// Steps left out at the start of a run of `count` steps: none of fewer than 3, else a quarter, at least 1.
    public static func warmUpSteps(_ count: Int) -> Int { count < 3 ? 0 : max(1, count / 4) }
}

/// Costs fitted to a real run: forward, backward and optimizer coefficients of `ComputeCost` by non-negative least
/// squares over the per-chunk median durations against their analytical work (`ChunkWork`), and one link's α-β
/// from the transfers a receiver waited for. It predicts other pipelines of the same model width on the same machine.
public struct Calibration: Sendable {
    public let source: String
    public let compute: ComputeCosts
    public let link: LinkCost
    public let sendOverhead: Double
    /// Fixed rank time of a receive once its message is there (taking it from the inbox, decoding it), on top of
    /// `receiveSecondsPerByte` (`MessageCostFit`).
    public let receiveOverhead: Double
    /// Fixed rank time of a send per rank of the calibration run, on top of `sendSecondsPerByte` (ranks differ: a
    /// rank whose neighbour computes while it sends shares a core with that neighbour's I/O thread).
    public let sendOverheadByRank: [Double]
    /// Seconds per payload byte of a send and of a receive, and before every compute action (`StepCosts`).
    public let sendSecondsPerByte: Double, receiveSecondsPerByte: Double, actionOverhead: Double
    /// How the run's compute spans and send costs spread around their step's mean (`DurationSpread`).
    public let spread: DurationSpread
    /// Ranks of the calibration run.
    public let ranks: Int
    /// Root-mean-square relative error of the fit over the per-chunk medians (forward, backward).
    public let residual: (forward: Double, backward: Double)

    public init(_ trace: MeasuredTrace) throws {
        source = trace.file
        let t = trace.topology
        let work = ChunkWork(model: t.modelConfig, layout: t.layout, microbatchSize: t.microbatchSize)
        let useSteps = trace.typicalSteps.isEmpty ? Set(trace.compute.map(\.step)) : trace.typicalSteps
        /// Coefficients of flops, bytes and kernels by non-negative least squares of the per-key mean durations.
        /// No per-action constant: within one run every chunk has about L/C layers, so a constant is collinear
        /// with the per-layer work and would not scale when another configuration has longer or shorter chunks.
        func coefficients(_ keys: [Int], _ works: [Work], _ y: [Double]) -> ComputeCost {
            let x = CalibrationMath.nonNegativeLeastSquares(keys.map { k in [works[k].flops, works[k].bytes, works[k].kernels] }, y)
            return ComputeCost(secondsPerFlop: x[0], secondsPerByte: x[1], secondsPerKernel: x[2], secondsPerAction: 0)
        }
        struct Fitted { var main: ComputeCost; var depth: ComputeCost?; var ends: ComputeCosts.EndCosts?; var executor: ExecutorCost?; var residual: Double }
        /// The cost of `kind`'s spans. Where every span carries its parts (`model_us`, `depth_us`), each part is
        /// fitted on its own features: the executor (span − model) per action and per state tensor, depth
        /// attention on its work (its kernels run at another rate than the sublayers' products), the rest of the
        /// model on the rest of the work. Within one run the three grow together, so a fit of their sum cannot
        /// split them, yet another configuration (more sources, shorter chunks) changes them in different
        /// proportions.
        func fit(_ kind: String, _ works: [Work], depth: [Work]?, head: [Work] = [], embedding: [Work] = [],
                 key: (MeasuredTrace.ComputeSpan) -> Int) throws -> Fitted {
            let spans = trace.compute.filter { $0.kind == kind && useSteps.contains($0.step) }
            var samples: [Int: [MeasuredTrace.ComputeSpan]] = [:]
            for s in spans { samples[key(s), default: []].append(s) }
            let keys = samples.keys.sorted()
            guard !keys.isEmpty else { throw CalibrationError.tooFewSpans(file: trace.file, "no \(kind) spans") }
            func mean(_ f: (MeasuredTrace.ComputeSpan) -> Double) -> [Double] { keys.map { CalibrationMath.mean(samples[$0]!.map(f)) } }
            let y = mean(\.seconds)
            var out = Fitted(main: .init(secondsPerFlop: 0, secondsPerByte: 0, secondsPerKernel: 0), depth: nil, ends: nil, executor: nil, residual: 0)
            var model = y
            let partsTimed = depth != nil && spans.allSatisfy { $0.modelSeconds != nil }
            if partsTimed {
                model = mean { $0.modelSeconds! }
                let x = CalibrationMath.nonNegativeLeastSquares(keys.map { [1, work.stateTensors[$0]] }, zip(y, model).map { $0 - $1 })
                out.executor = ExecutorCost(secondsPerAction: x[0], secondsPerTensor: x[1])
            }
            var rest = works, restSeconds = model
            if let depth, spans.allSatisfy({ $0.depthSeconds != nil }), keys.contains(where: { depth[$0] != .zero }) {
                let yd = mean { $0.depthSeconds! }
                out.depth = coefficients(keys, depth, yd)
                rest = zip(works, depth).map { $0 - $1 }
                restSeconds = zip(model, yd).map { $0 - $1 }
            }
            if partsTimed, !head.isEmpty {
                // The layers' work is the same in every chunk of a run (and in every configuration of its width, per
                // layer), so one rate for it, plus what depth attention's traffic costs them (`EndCosts`: it grows
                // with the sources a chunk's layers stream, 1 to 16 per layer in the full-AttnRes calibration); the
                // head and the embedding, which only the last and the first chunk run, get theirs.
                let layers = keys.map { rest[$0] - head[$0] - embedding[$0] }
                let x = CalibrationMath.nonNegativeLeastSquares(keys.indices.map {
                    [layers[$0].flops, depth?[keys[$0]].bytes ?? 0, head[keys[$0]].flops, embedding[keys[$0]].flops]
                }, restSeconds)
                out.main = ComputeCost(secondsPerFlop: x[0], secondsPerByte: 0, secondsPerKernel: 0)
                out.ends = ComputeCosts.EndCosts(head: ComputeCost(secondsPerFlop: x[2], secondsPerByte: 0, secondsPerKernel: 0),
                                                 embedding: ComputeCost(secondsPerFlop: x[3], secondsPerByte: 0, secondsPerKernel: 0),
                                                 layersPerDepthByte: x[1])
            } else {
                out.main = coefficients(keys, rest, restSeconds)
            }
            let rel = zip(keys, y).map { k, v in
                let p = ComputeCosts.parts(works[k], depth: depth?[k] ?? .zero, head: head.isEmpty ? .zero : head[k],
                                           embedding: embedding.isEmpty ? .zero : embedding[k],
                                           tensors: work.stateTensors.indices.contains(k) ? work.stateTensors[k] : 0,
                                           main: out.main, depthCost: out.depth, ends: out.ends, executor: out.executor)
                return pow((p.total - v) / max(v, 1e-12), 2)
            }
            out.residual = (rel.reduce(0, +) / Double(rel.count)).squareRoot()
            return out
        }
        let f = try fit("forward", work.forward, depth: work.forwardDepth, head: work.forwardHead, embedding: work.forwardEmbedding) { $0.chunk }
        let b = try fit("backward", work.backward, depth: work.backwardDepth, head: work.backwardHead, embedding: work.backwardEmbedding) { $0.chunk }
        // A trace without optimizer spans (a simulated one) leaves the optimizer free.
        let o = trace.compute.contains { $0.kind == "optimizer" } ? try fit("optimizer", work.optimizer, depth: nil) { $0.rank }.main
                                                                 : ComputeCost(secondsPerFlop: 0, secondsPerByte: 0, secondsPerKernel: 0)
        compute = ComputeCosts(forward: f.main, backward: b.main, optimizer: o, forwardDepth: f.depth, backwardDepth: b.depth,
                               forwardExecutor: f.executor, backwardExecutor: b.executor, forwardEnds: f.ends, backwardEnds: b.ends)
        let fr = f.residual, br = b.residual
        residual = (fr, br)
        // α-β: per message size, the lower quartile of the transfers their receiver waited for (a receiver busy
        // computing records the arrival up to one action late), then a non-negative line through them.
        let waited = trace.transfers.filter(\.waitedFor)
        let pool = waited.count >= 4 ? waited : trace.transfers
        let used = pool.filter { useSteps.contains($0.step) || useSteps.isEmpty }
        var bySize: [Int: [Double]] = [:]
        for m in used { bySize[m.bytes, default: []].append(m.seconds) }
        if bySize.isEmpty {
            link = .free
        } else {
            let sizes = bySize.keys.sorted()
            let q = sizes.map { CalibrationMath.quantile(bySize[$0]!, 0.25) }
            let x = CalibrationMath.nonNegativeLeastSquares(sizes.map { [1, Double($0)] }, q)
            link = LinkCost(latency: x[0], bandwidth: x[1] > 0 ? 1 / x[1] : .infinity)
        }
        // Each waited-for transfer's time ÷ the line's time for its size: the late arrivals the line leaves out
        // (none when the line was fitted on all transfers, whose arrivals may be stamped an action late).
        let fitted = link
        let transferRatios: [Double] = waited.count < 4 ? [] : used.compactMap { m in
            let line = fitted.latency + (fitted.bandwidth.isInfinite ? 0 : Double(m.bytes) / fitted.bandwidth)
            return line > 0 ? m.seconds / line : nil
        }
        ranks = t.ranks
        let message = MessageCostFit(trace, useSteps: useSteps)
        sendOverheadByRank = message.sendOverheadByRank
        sendOverhead = CalibrationMath.mean(message.sendOverheadByRank)
        sendSecondsPerByte = message.sendSecondsPerByte
        receiveOverhead = message.receiveOverhead
        receiveSecondsPerByte = message.receiveSecondsPerByte
        actionOverhead = message.actionOverhead
        var computeRatios: [Double] = []
        var groups: [[Int]: [Double]] = [:]
        for s in trace.compute where (s.kind == "forward" || s.kind == "backward") && useSteps.contains(s.step) {
            groups[[s.kind == "forward" ? 0 : 1, s.chunk, s.step], default: []].append(s.seconds)
        }
        for v in groups.values {
            let m = CalibrationMath.mean(v)
            if m > 0 { computeRatios += v.map { $0 / m } }
        }
        spread = DurationSpread(compute: computeRatios.sorted(), send: message.sendSpread.sorted(), transfer: transferRatios.sorted())
    }
}

import Pipeline

/// The rank time a real run spent on messages and between actions, fitted from its trace: what a send, a receive
/// and a compute action cost the rank beyond the compute spans themselves.
///
/// Every gap on a rank's timeline (time in no span) is charged to the span that follows it, so all of a rank's
/// time is accounted for, as the replay spends it:
/// - a **send** costs the gap before its span plus the span (encoding the tensors, then the send call):
///   α_r + β_send · bytes, one α per rank (`StepCosts.sendOverheadByRank`) and one β;
/// - a **forward or backward** costs the gap before it (with the gap before a wait that preceded it): γ, plus
///   α_recv + β_recv · bytes when it consumed a received message (decoding it, the executor's book-keeping).
///
/// Each is a non-negative least-squares line through the mean cost at each message size over the run's typical steps
/// (`MeasuredTrace.typicalSteps`), as the compute durations and the measured step time are taken: the mean, because
/// a send call preempted by the transport's I/O thread on a busy core lasts until the message is written and the
/// step pays the average. Bytes are the hop plan's payload, as the replay charges them. A per-byte term needs two
/// message sizes in the calibration run; with one it is 0 and the size's cost is all fixed.
struct MessageCostFit {
    var sendOverheadByRank: [Double]
    var sendSecondsPerByte = 0.0
    var receiveOverhead = 0.0, receiveSecondsPerByte = 0.0
    var actionOverhead = 0.0
    /// Each send's cost ÷ the mean of its rank and size in its step (`DurationSpread.send`).
    var sendSpread: [Double] = []

    init(_ trace: MeasuredTrace, useSteps: Set<Int>) {
        let t = trace.topology, layout = t.layout, chunks = layout.chunks
        let hopBytes = HopPlan(layout: layout, residual: t.residualConfig).tensors.map { Double($0.count * t.trafficConfig.activationBytes) }
        var sends: [Int: [Double: [Int: [Double]]]] = [:]        // rank → bytes → step → costs
        var computes: [Bool: [Double: [Int: [Double]]]] = [:]    // consumed a message → bytes → step → gaps
        for (rank, spans) in trace.timeline {
            var previous: MeasuredTrace.TimelineSpan?
            var carried = 0.0
            for s in spans where useSteps.contains(s.step) {
                defer { previous = s }
                guard let p = previous, p.step == s.step else { carried = 0; continue }
                let gap = max(0, s.start - p.end)
                switch s.kind {
                case .send:
                    guard s.hop >= 0, s.hop < hopBytes.count else { continue }
                    sends[rank, default: [:]][hopBytes[s.hop], default: [:]][s.step, default: []].append(gap + s.end - s.start)
                case .wait: carried += gap
                case .forward, .backward:
                    let hop = s.kind == .forward ? (s.chunk > 0 ? s.chunk - 1 : nil) : (s.chunk < chunks - 1 ? s.chunk : nil)
                    computes[hop != nil, default: [:]][hop.map { hopBytes[$0] } ?? 0, default: [:]][s.step, default: []].append(gap + carried)
                    carried = 0
                case .optimizer: carried = 0
                }
            }
        }
        func typical(_ perStep: [Int: [Double]]) -> Double { CalibrationMath.mean(perStep.values.flatMap { $0 }) }
        for bySize in sends.values {
            for perStep in bySize.values {
                for costs in perStep.values {
                    let m = CalibrationMath.mean(costs)
                    if m > 0 { sendSpread += costs.map { $0 / m } }
                }
            }
        }
        // Sends: one intercept per rank, one slope; the slope only with two sizes or more.
        let p = t.ranks
        var rows: [[Double]] = [], y: [Double] = []
        let sizes = Set(sends.values.flatMap(\.keys))
        for (rank, bySize) in sends where rank < p {
            for (bytes, costs) in bySize {
                var row = [Double](repeating: 0, count: p)
                row[rank] = 1
                rows.append(row + (sizes.count >= 2 ? [bytes] : [])); y.append(typical(costs))
            }
        }
        let s = rows.isEmpty ? [] : CalibrationMath.nonNegativeLeastSquares(rows, y)
        sendOverheadByRank = (0..<p).map { $0 < s.count ? s[$0] : 0 }
        if sizes.count >= 2, s.count > p { sendSecondsPerByte = s[p] }
        // Computes: γ for every one, α_recv + β_recv · bytes for those that consumed a message.
        rows = []; y = []
        let received = computes[true] ?? [:]
        for gaps in (computes[false] ?? [:]).values { rows.append([1, 0] + (received.count >= 2 ? [0] : [])); y.append(typical(gaps)) }
        for (bytes, gaps) in received { rows.append([1, 1] + (received.count >= 2 ? [bytes] : [])); y.append(typical(gaps)) }
        guard !rows.isEmpty else { return }
        let g = CalibrationMath.nonNegativeLeastSquares(rows, y)
        actionOverhead = g[0]
        receiveOverhead = g[1]
        if g.count > 2 { receiveSecondsPerByte = g[2] }
    }
}

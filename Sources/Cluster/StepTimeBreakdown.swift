import Pipeline

/// Where each rank's time goes in one step, measured (a real run's trace) and simulated (the replay of its
/// topology), side by side: which part of the model misses, not only by how much.
public struct StepTimeBreakdown: Sendable {
    /// One rank's step: from its first forward to the end of its last forward, backward or send.
    public struct Rank: Sendable {
        /// Sends include the gap before each send span (encoding the tensors), as `MessageCostFit` charges them;
        /// other is the rest of the span: between actions (receives, book-keeping; in the replay γ and the
        /// receive costs).
        public var span = 0.0, compute = 0.0, sends = 0.0, waits = 0.0, other = 0.0
    }
    public let measured: [Rank]
    public let simulated: [Rank]

    /// The measured ranks are means over the trace's typical steps (`MeasuredTrace.typicalSteps`).
    public init?(_ trace: MeasuredTrace, _ sim: StepTimeSimulation) {
        guard let spans = sim.spans, let messages = sim.messages, let waits = sim.waits else { return nil }
        let p = sim.layout.ranks
        var simulated = [Rank](repeating: Rank(), count: p)
        var first = [Double](repeating: .infinity, count: p), last = [Double](repeating: 0, count: p)
        for s in spans {
            simulated[s.rank].compute += s.end - s.start
            first[s.rank] = min(first[s.rank], s.start); last[s.rank] = max(last[s.rank], s.end)
        }
        for m in messages {
            simulated[m.src].sends += m.sendSeconds
            last[m.src] = max(last[m.src], m.sent + m.sendSeconds)
        }
        // Only the waits inside the rank's span: before its first forward a rank has not started.
        for w in waits { simulated[w.rank].waits += max(0, min(w.end, last[w.rank]) - max(w.start, first[w.rank])) }
        for r in 0..<p {
            simulated[r].span = first[r].isFinite ? last[r] - first[r] : 0
            simulated[r].other = simulated[r].span - simulated[r].compute - simulated[r].sends - simulated[r].waits
        }
        let use = trace.typicalSteps.isEmpty ? Set(trace.compute.map(\.step)) : trace.typicalSteps
        var measured: [Rank] = []
        for r in 0..<p {
            var perStep: [Rank] = []
            for step in use.sorted() {
                let mine = (trace.timeline[r] ?? []).filter { $0.step == step && $0.kind != .optimizer }
                guard let start = mine.first(where: { $0.kind == .forward })?.start, let end = mine.map(\.end).max() else { continue }
                var x = Rank()
                x.span = end - start
                var previousEnd = start
                for s in mine where s.start >= start {
                    defer { previousEnd = max(previousEnd, s.end) }
                    switch s.kind {
                    case .forward, .backward: x.compute += s.end - s.start
                    case .send: x.sends += s.end - s.start + max(0, s.start - previousEnd)
                    case .wait: x.waits += s.end - s.start
                    case .optimizer: break
                    }
                }
                x.other = x.span - x.compute - x.sends - x.waits
                perStep.append(x)
            }
            func mean(_ f: (Rank) -> Double) -> Double { CalibrationMath.mean(perStep.map(f)) }
            var m = Rank()
            m.span = mean(\.span); m.compute = mean(\.compute); m.sends = mean(\.sends); m.waits = mean(\.waits)
            m.other = mean(\.other)
            measured.append(m)
        }
        self.measured = measured
        self.simulated = simulated
    }

    /// One line per rank: measured, then simulated, in milliseconds.
    public var table: String {
        func ms(_ s: Double) -> String { String(format: "%7.2f", s * 1e3) }
        var lines = ["per rank, ms (measured: mean over the typical steps; send = the gap before each send and its call; other = the rest, between actions)",
                     "rank  measured: span  compute     send     wait    other  |  simulated: span  compute     send     wait    other"]
        for r in measured.indices {
            let a = measured[r], b = simulated[r]
            lines.append(String(format: "%4d  %15@  %7@  %7@  %7@  %7@  |  %16@  %7@  %7@  %7@  %7@", r, ms(a.span), ms(a.compute), ms(a.sends), ms(a.waits), ms(a.other),
                                ms(b.span), ms(b.compute), ms(b.sends), ms(b.waits), ms(b.other)))
        }
        return lines.joined(separator: "\n")
    }
}

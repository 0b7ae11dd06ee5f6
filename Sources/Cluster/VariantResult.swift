import Pipeline

/// What one variant measured on real processes, set beside what the analytical model predicts.
public struct VariantResult: Sendable {
    public let topology: Topology
    public let prediction: TrafficPrediction
    /// Payload bytes per step on each link, as counted by the receiving rank.
    public let measuredLinks: [LinkKey: Int]
    public let headerBytesPerStep: Int
    public let peakCachedBytes: [Int]
    /// Forward tensors per hop for one microbatch, as sent.
    public let tensorsPerHop: [Int]
    public let seconds: Double
    /// Seconds each rank was blocked at receives, over the run, and per step (`[rank][step]`; a rank that did
    /// not report its steps has an empty list).
    public let waitSeconds: [Double]
    public let waitSecondsPerStep: [[Double]]
    /// Seconds each rank computed (forward, backward, optimizer).
    public let computeSeconds: [Double]
    /// Compute mode: the mean loss of every step, as the last chunk computed it.
    public let losses: [Float]
    /// Timed spans per rank (when traced).
    public let trace: [Int: [TraceRecord]]?
    /// Measured idle fraction per rank (when traced) and the schedule's theoretical one (unit-time F and B).
    public let measuredBubble: [Double]?
    public let theoreticalBubble: [Double]
    /// Steps taken before this run (a resumed run's losses are steps firstStep+1 …).
    public let firstStep: Int

    public init(topology: Topology, reports: [WorkerReport], seconds: Double, losses: [Float] = [], firstStep: Int = 0) throws {
        self.topology = topology
        self.losses = losses
        self.firstStep = firstStep
        if reports.allSatisfy({ $0.trace != nil }) {
            let t = Dictionary(uniqueKeysWithValues: reports.map { ($0.rank, $0.trace!) })
            trace = t
            measuredBubble = ChromeTrace.bubbleFractions(t, ranks: reports.count, steps: topology.steps)
        } else {
            trace = nil
            measuredBubble = nil
        }
        theoreticalBubble = try ScheduleSimulation(topology.makeSchedule()).bubbleFractionPerRank
        self.seconds = seconds
        prediction = try TrafficPrediction(topology.trafficConfig)
        let steps = topology.steps
        var received: [LinkKey: Int] = [:], sent: [LinkKey: Int] = [:]
        // Reports come from other processes: a count that cannot be summed is a report error, not a trap.
        func add(_ table: inout [LinkKey: Int], _ l: LinkCount, rank: Int, field: String) throws {
            let key = LinkKey(src: l.src, dst: l.dst, direction: l.direction, kind: l.kind)
            let (sum, overflow) = table[key, default: 0].addingReportingOverflow(l.payloadBytes)
            guard !overflow else {
                throw ClusterError.measuredDiffers("rank \(rank)'s report: \(field) bytes on \(l.src)→\(l.dst) \(l.direction.rawValue) \(l.kind.rawValue) overflow a 64-bit count")
            }
            table[key] = sum
        }
        for r in reports {
            for l in r.received { try add(&received, l, rank: r.rank, field: "received") }
            for l in r.sent { try add(&sent, l, rank: r.rank, field: "sent") }
        }
        let totals = [Array(received.values), Array(sent.values), reports.map(\.headerBytesSent)]
        for (what, values) in zip(["received", "sent", "header"], totals) where TopologyFootprint.sum(values) == nil {
            throw ClusterError.measuredDiffers("the reports' \(what) bytes overflow a 64-bit count")
        }
        // Every byte sent must have arrived: a difference is lost or duplicated data, never reported as a result.
        guard received == sent else {
            let diff = Set(received.keys).union(sent.keys).filter { received[$0] != sent[$0] }.sorted()
            throw ClusterError.measuredDiffers("sent and received bytes differ on " + diff.map { "\($0.src)→\($0.dst) \($0.direction.rawValue) \($0.kind.rawValue): sent \(sent[$0] ?? 0), received \(received[$0] ?? 0)" }.joined(separator: "; "))
        }
        measuredLinks = received.mapValues { $0 / steps }
        headerBytesPerStep = reports.reduce(0) { $0 + $1.headerBytesSent } / steps
        peakCachedBytes = reports.map(\.peakCachedBytes)
        var perHop = [Int](repeating: 0, count: topology.layout.hops)
        for r in reports { for (h, n) in r.tensorsPerHop where h < perHop.count { perHop[h] = max(perHop[h], n) } }
        tensorsPerHop = perHop
        waitSeconds = reports.map(\.waitSeconds)
        computeSeconds = reports.map(\.computeSeconds)
        if let r = reports.first(where: { !$0.waitSecondsPerStep.isEmpty && $0.waitSecondsPerStep.count != steps }) {
            throw ClusterError.measuredDiffers("rank \(r.rank)'s report lists wait_seconds_per_step for \(r.waitSecondsPerStep.count) steps; the variant ran \(steps)")
        }
        waitSecondsPerStep = reports.map(\.waitSecondsPerStep)
    }

    public var forwardPayloadBytesPerStep: Int { measuredLinks.filter { $0.key.direction == .forward }.values.reduce(0, +) }
    public var backwardPayloadBytesPerStep: Int { measuredLinks.filter { $0.key.direction == .backward }.values.reduce(0, +) }
    public var payloadBytesPerStep: Int { forwardPayloadBytesPerStep + backwardPayloadBytesPerStep }

    /// Measured equals predicted, to the byte, on every link, and for the cache peaks and tensors per hop.
    public var matchesPrediction: Bool { mismatches.isEmpty }

    /// Human-readable differences between measurement and model (empty when they agree).
    public var mismatches: [String] {
        var out: [String] = []
        for k in Set(measuredLinks.keys).union(prediction.links.keys).sorted() where measuredLinks[k] != prediction.links[k] {
            out.append("link \(k.src)→\(k.dst) \(k.direction.rawValue) \(k.kind.rawValue): measured \(measuredLinks[k] ?? 0), predicted \(prediction.links[k] ?? 0)")
        }
        if peakCachedBytes != prediction.peakCachedBytes { out.append("peak cached bytes measured \(peakCachedBytes), predicted \(prediction.peakCachedBytes)") }
        if tensorsPerHop != prediction.tensorsPerHop { out.append("tensors per hop measured \(tensorsPerHop), predicted \(prediction.tensorsPerHop)") }
        if headerBytesPerStep != prediction.headerBytesPerStep { out.append("header bytes measured \(headerBytesPerStep), predicted \(prediction.headerBytesPerStep)") }
        return out
    }
}

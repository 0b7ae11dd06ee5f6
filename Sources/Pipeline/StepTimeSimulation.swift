/// The α-β cost of one directed link: a message of B bytes occupies the link for B / bandwidth seconds (one
/// transfer at a time per direction, first come first served) and arrives `latency` seconds after it leaves it.
public struct LinkCost: Sendable, Equatable, Codable {
    /// Seconds from the end of a transfer on the link to the message's arrival in the receiver's inbox (α).
    public var latency: Double
    /// Bytes per second while a message is on the link (1/β); `.infinity` makes transfers take no time.
    public var bandwidth: Double

    public init(latency: Double, bandwidth: Double) { self.latency = latency; self.bandwidth = bandwidth }

    /// A link that costs nothing: with it the simulation is the schedule's own timing.
    public static let free = LinkCost(latency: 0, bandwidth: .infinity)

    /// Seconds a message of `bytes` occupies the link.
    public func occupancy(bytes: Int) -> Double { bandwidth.isInfinite ? 0 : Double(bytes) / bandwidth }
}

/// Everything a step's timing depends on besides the schedule: a duration per compute action, an α-β cost per
/// link, and what each hop message weighs. Durations are per chunk (every microbatch of a step has the same shape).
public struct StepCosts: Sendable {
    /// Seconds of chunk k's forward, for k in 0..<C.
    public var forward: [Double]
    /// Seconds of chunk k's backward.
    public var backward: [Double]
    /// Chunk k's forward and backward in their parts (empty: not known). Only the simulated trace uses them
    /// (each span's `model_us` and `depth_us`, as a real run's trace carries them).
    public var forwardParts: [ComputeCosts.Parts] = [], backwardParts: [ComputeCosts.Parts] = []
    /// Seconds each rank spends after its last action of the step (the optimizer), 0 by default.
    public var optimizer: [Double]
    /// Seconds a send keeps its rank busy (the CPU cost of handing a message to the transport), 0 by default.
    public var sendOverhead: Double
    /// Seconds a receive keeps its rank busy once its message is there (taking it from the inbox, decoding), 0 by default.
    public var receiveOverhead: Double = 0
    /// Per-rank send overheads, when they differ (calibrated on a run of as many ranks); empty = `sendOverhead`.
    public var sendOverheadByRank: [Double] = []
    /// Per-rank factor on every compute duration of the rank (forward, backward, optimizer): a straggler
    /// (`--fault slow:R×F`) has F; empty = 1 for every rank.
    public var computeScaleByRank: [Double] = []
    /// Seconds per payload byte a send keeps its rank busy on top of its overhead (encoding the tensors into a
    /// frame and handing it to the transport copy every byte), 0 by default.
    public var sendSecondsPerByte: Double = 0
    /// Seconds per payload byte a receive keeps its rank busy on top of its overhead (decoding), 0 by default.
    public var receiveSecondsPerByte: Double = 0
    /// Seconds a rank spends before every forward and backward outside the compute itself (the executor's
    /// book-keeping: gathering inputs, the cache), 0 by default. Not counted as busy.
    public var actionOverhead: Double = 0
    /// Draw each compute duration, send cost and transfer time from a real run's spread around its typical value
    /// (nil: every action and message takes its typical value).
    public var spread: DurationSpread?
    /// Payload bytes of hop k's message (forward; its gradient going back weighs the same).
    public var hopBytes: [Int]
    /// Link cost of src → dst; every link not named in `overrides` costs `defaultLink`.
    public var defaultLink: LinkCost
    public var overrides: [LinkID: LinkCost]

    /// A physical link direction: every message from `src` to `dst`, forward or backward, shares it.
    public struct LinkID: Hashable, Sendable, Codable, Comparable {
        public let src: Int, dst: Int
        public init(src: Int, dst: Int) { self.src = src; self.dst = dst }
        public static func < (a: LinkID, b: LinkID) -> Bool { (a.src, a.dst) < (b.src, b.dst) }
    }

    public init(forward: [Double], backward: [Double], optimizer: [Double] = [], sendOverhead: Double = 0,
                hopBytes: [Int], defaultLink: LinkCost = .free, overrides: [LinkID: LinkCost] = [:]) {
        self.forward = forward; self.backward = backward; self.optimizer = optimizer; self.sendOverhead = sendOverhead
        self.hopBytes = hopBytes; self.defaultLink = defaultLink; self.overrides = overrides
    }

    public func link(src: Int, dst: Int) -> LinkCost { overrides[LinkID(src: src, dst: dst)] ?? defaultLink }

    /// Unit-time forward and backward with free links: `ScheduleSimulation`'s timing.
    public static func unit(_ layout: Layout) -> StepCosts {
        StepCosts(forward: Array(repeating: 1, count: layout.chunks), backward: Array(repeating: 1, count: layout.chunks),
                  hopBytes: Array(repeating: 0, count: layout.hops))
    }
}

/// An event-driven replay of one training step: every rank runs its action list (`Schedule`) in order; a compute
/// action takes its duration, a send hands its message to the link and returns at once (plus the send overhead), a
/// receive waits until the message has arrived. A message leaves when its link is free (one transfer at a time per
/// direction, in the order the sender issued them) and arrives latency + bytes / bandwidth later.
///
/// The sender of every message on a link is the link's source rank, whose clock only moves forward, so serving a
/// link in the sender's program order is serving it in time order: each message's arrival is known when it is
/// sent, and the replay needs no global event queue. It advances a rank until it waits for a message that has not
/// been sent, and wakes the rank when that message is sent: O(actions) in all.
public struct StepTimeSimulation: Sendable {
    /// The replayed schedule's layout and microbatch count.
    public let layout: Layout
    public let microbatches: Int
    /// The step's length: the last rank's end, optimizer included.
    public let stepSeconds: Double
    /// End of the last forward or backward anywhere (the pipeline's span, optimizer excluded).
    public let pipelineSeconds: Double
    /// Forward and backward seconds per rank.
    public let busySeconds: [Double]
    /// Seconds each rank was blocked at a receive.
    public let waitSeconds: [Double]
    /// Seconds a rank waited while its message was on (or queued for) the link, per link and direction: the
    /// communication the schedule did not hide. Zero with free links, however large the bubble.
    public let exposedComm: [ExposedComm]
    /// Compute actions and messages in the order they ran (nil unless asked for: large steps have millions).
    public let spans: [Span]?
    public let messages: [Message]?
    /// Every time a rank blocked at a receive: from when it got there to the message's arrival.
    public let waits: [Wait]?
    /// The chain of actions and transfers that ends last, from the step's start (nil unless spans were kept).
    public let criticalPath: [PathItem]?
    /// Compute actions, messages and receives replayed.
    public let events: Int

    public struct ExposedComm: Sendable, Equatable {
        public let src: Int, dst: Int
        public let direction: Direction
        public let seconds: Double
    }

    public struct Span: Sendable, Equatable {
        public let rank: Int
        public let action: Action
        public let start: Double, end: Double
    }

    public struct Wait: Sendable, Equatable {
        public let rank: Int
        public let key: HopKey
        public let start: Double, end: Double
    }

    public struct Message: Sendable, Equatable {
        public let key: HopKey
        public let src: Int, dst: Int
        public let bytes: Int
        /// When the send was issued, when the link took it, when it arrived.
        public let sent: Double, onLink: Double, arrived: Double
        /// Seconds the send kept its rank busy (its overhead and per-byte cost).
        public var sendSeconds: Double = 0
    }

    /// One link of the critical path: a compute action, or a message that kept its receiver waiting.
    public enum PathItem: Sendable, Equatable {
        case compute(Span)
        case transfer(Message)
    }

    /// Why a replay failed.
    public enum Failure: Error, CustomStringConvertible {
        case deadlock(stuck: [(rank: Int, action: Action)])
        case mismatch(String)

        public var description: String {
            switch self {
            case .deadlock(let stuck):
                return "schedule deadlocks: " + stuck.map { "rank \($0.rank) waits at \($0.action)" }.joined(separator: ", ")
            case .mismatch(let s): return "step-time costs do not fit the schedule: \(s)"
            }
        }
    }

    /// Replays `schedule` with `costs`; `keepSpans` records every compute action and message (for the trace and the
    /// critical path).
    public init(_ schedule: Schedule, costs: StepCosts, keepSpans: Bool = true) throws {
        try self.init(layout: schedule.layout, microbatches: schedule.microbatches,
                      programs: schedule.actions.map { $0.makeIterator() }, costs: costs, keepSpans: keepSpans)
    }

    /// Replays a built-in schedule without storing it: each rank's actions are generated as the replay reaches them,
    /// so memory is O(messages) rather than O(actions). The same timing as replaying `Schedule(program)`.
    public init(_ program: ScheduleProgram, costs: StepCosts, keepSpans: Bool = true) throws {
        try self.init(layout: program.layout, microbatches: program.microbatches,
                      programs: (0..<program.layout.ranks).map { program.program(rank: $0) }, costs: costs, keepSpans: keepSpans)
    }

    private init<Program: IteratorProtocol>(layout: Layout, microbatches m: Int, programs: [Program], costs: StepCosts,
                                            keepSpans: Bool) throws where Program.Element == Action {
        let p = layout.ranks, chunks = layout.chunks, hops = layout.hops
        guard costs.forward.count == chunks, costs.backward.count == chunks else {
            throw Failure.mismatch("\(costs.forward.count) forward and \(costs.backward.count) backward durations for \(chunks) chunks")
        }
        guard costs.hopBytes.count == hops else { throw Failure.mismatch("\(costs.hopBytes.count) hop sizes for \(hops) hops") }
        guard costs.sendOverheadByRank.isEmpty || costs.sendOverheadByRank.count == p else {
            throw Failure.mismatch("\(costs.sendOverheadByRank.count) send overheads for \(p) ranks")
        }
        guard costs.computeScaleByRank.isEmpty || costs.computeScaleByRank.count == p else {
            throw Failure.mismatch("\(costs.computeScaleByRank.count) compute scale factors for \(p) ranks")
        }
        func scale(_ r: Int) -> Double { costs.computeScaleByRank.isEmpty ? 1 : costs.computeScaleByRank[r] }
        guard costs.optimizer.isEmpty || costs.optimizer.count == p else {
            throw Failure.mismatch("\(costs.optimizer.count) optimizer durations for \(p) ranks")
        }
        self.layout = layout
        self.microbatches = m
        var programs = programs
        // Message index: (direction, hop, microbatch); link index: src·2 + (0 towards rank+1, 1 towards rank−1).
        func index(_ backward: Bool, _ hop: Int, _ mb: Int) -> Int { ((backward ? hops : 0) + hop) * m + mb }
        func linkIndex(_ src: Int, _ dst: Int) -> Int { src * 2 + (dst == (src + 1) % p ? 0 : 1) }
        var links = [LinkCost](repeating: costs.defaultLink, count: 2 * p)
        for r in 0..<p {
            links[linkIndex(r, (r + 1) % p)] = costs.link(src: r, dst: (r + 1) % p)
            if (r + p - 1) % p != (r + 1) % p { links[linkIndex(r, (r + p - 1) % p)] = costs.link(src: r, dst: (r + p - 1) % p) }
        }
        let occupancy = costs.hopBytes.map { Double($0) }
        var linkFree = [Double](repeating: 0, count: 2 * p)
        /// The message that last occupied each link (for the critical path), −1 = none.
        var linkLast = [Int](repeating: -1, count: 2 * p)
        let count = 2 * max(hops, 0) * m
        /// Per message i: its arrival at 2i (NaN until sent) and when it was sent at 2i + 1, side by side because
        /// the receive reads both. The only per-message state: 16 bytes.
        var message = [Double](repeating: .nan, count: 2 * count)
        /// The message each rank is blocked on, −1 = none: a send to that rank of that message wakes it.
        var waitingOn = [Int](repeating: -1, count: p)
        /// The action a blocked rank stopped at (its receive), replayed first when it wakes.
        var pending = [Action?](repeating: nil, count: p)
        var clock = [Double](repeating: 0, count: p)
        var busy = [Double](repeating: 0, count: p)
        var waited = [Double](repeating: 0, count: p)
        var exposed = [Double](repeating: 0, count: 4 * p)  // (link index, direction)
        var events = 0
        // Spans and their causes, kept only when asked.
        var spans: [Span] = [], messages: [Message] = [], waits: [Wait] = []
        /// Per span: the message whose arrival started it (index into `messages`), or −1 (its rank's own previous action).
        var spanCause: [Int] = []
        /// Per span: the rank's previous span, −1 = none.
        var spanPrevious: [Int] = []
        /// Per message (by `index`): its position in `messages`; per message in `messages`: the producing span and the
        /// message ahead of it on its link when it had to queue (−1 = none).
        var messageSlot = keepSpans ? [Int](repeating: -1, count: count) : []
        var messageProducer: [Int] = [], messageQueuedBehind: [Int] = []
        var lastSpan = [Int](repeating: -1, count: p)
        var pendingCause = [Int](repeating: -1, count: p)
        let sendOverhead = costs.sendOverheadByRank.isEmpty ? [Double](repeating: costs.sendOverhead, count: p) : costs.sendOverheadByRank

        var draws = DurationSpread.Draws(state: costs.spread?.seed ?? 0)
        let computeSpread = costs.spread?.compute ?? [], sendSpread = costs.spread?.send ?? [], transferSpread = costs.spread?.transfer ?? []
        var ready = Array((0..<p).reversed())
        while let r = ready.popLast() {
            var t = clock[r]
            var next = pending[r]
            pending[r] = nil
            if next == nil { next = programs[r].next() }
            replay: while let a = next {
                switch a {
                case .recvForward, .recvBackward:
                    let k = a.message!, backward = k.direction == .backward
                    let i = index(backward, k.hop, k.microbatch)
                    let arrival = message[2 * i]
                    guard !arrival.isNaN else { waitingOn[r] = i; pending[r] = a; break replay }
                    events += 1
                    if arrival > t {
                        waited[r] += arrival - t
                        let src = k.source(layout)
                        exposed[linkIndex(src, r) * 2 + (backward ? 1 : 0)] += arrival - max(t, message[2 * i + 1])
                        if keepSpans {
                            pendingCause[r] = messageSlot[i]
                            waits.append(Wait(rank: r, key: messages[messageSlot[i]].key, start: t, end: arrival))
                        }
                        t = arrival
                    }
                    t += costs.receiveOverhead + costs.receiveSecondsPerByte * occupancy[k.hop]
                case .forward(let c, _), .backward(let c, _):
                    guard layout.rank(ofChunk: c) == r else { throw Failure.mismatch("rank \(r) runs \(a) of rank \(layout.rank(ofChunk: c))") }
                    var d: Double
                    if case .forward = a { d = costs.forward[c] * scale(r) } else { d = costs.backward[c] * scale(r) }
                    if !computeSpread.isEmpty { d *= draws.next(computeSpread) }
                    t += costs.actionOverhead
                    if keepSpans {
                        spans.append(Span(rank: r, action: a, start: t, end: t + d))
                        spanCause.append(pendingCause[r]); spanPrevious.append(lastSpan[r])
                        pendingCause[r] = -1
                        lastSpan[r] = spans.count - 1
                    }
                    t += d
                    busy[r] += d
                    events += 1
                case .sendForward, .sendBackward:
                    let key = a.message!, backward = key.direction == .backward
                    let i = index(backward, key.hop, key.microbatch)
                    guard message[2 * i].isNaN else { throw Failure.mismatch("\(a) on rank \(r): message sent twice") }
                    let dst = key.destination(layout)
                    let l = linkIndex(r, dst)
                    let start = max(t, linkFree[l])
                    let link = links[l]
                    let occupied = link.bandwidth.isInfinite ? 0 : occupancy[key.hop] / link.bandwidth
                    linkFree[l] = start + occupied
                    // A drawn transfer ratio stretches the message's time in flight, not the link's occupancy: the
                    // late part is the transport waiting for a core, which does not hold the wire.
                    let flight = (occupied + link.latency) * (transferSpread.isEmpty ? 1 : draws.next(transferSpread))
                    message[2 * i] = start + flight
                    message[2 * i + 1] = t
                    var sendCost = sendOverhead[r] + costs.sendSecondsPerByte * occupancy[key.hop]
                    if !sendSpread.isEmpty { sendCost *= draws.next(sendSpread) }
                    if keepSpans {
                        messageSlot[i] = messages.count
                        messageProducer.append(lastSpan[r])
                        messageQueuedBehind.append(start > t ? linkLast[l] : -1)
                        linkLast[l] = messages.count
                        messages.append(Message(key: key, src: r, dst: dst, bytes: costs.hopBytes[key.hop], sent: t, onLink: start, arrived: message[2 * i],
                                                sendSeconds: sendCost))
                    }
                    t += sendCost
                    events += 1
                    if waitingOn[dst] == i { ready.append(dst); waitingOn[dst] = -1 }
                }
                next = programs[r].next()
            }
            clock[r] = t
        }
        let stuck = (0..<p).compactMap { r in pending[r].map { (rank: r, action: $0) } }
        guard stuck.isEmpty else { throw Failure.deadlock(stuck: stuck) }

        pipelineSeconds = clock.max() ?? 0
        stepSeconds = (0..<p).map { clock[$0] + (costs.optimizer.isEmpty ? 0 : costs.optimizer[$0] * scale($0)) }.max() ?? 0
        busySeconds = busy
        waitSeconds = waited
        var out: [ExposedComm] = []
        for src in 0..<p {
            for dst in Set([(src + 1) % p, (src + p - 1) % p]).sorted() where hops > 0 {
                for (d, direction) in [(0, Direction.forward), (1, Direction.backward)] {
                    let s = exposed[linkIndex(src, dst) * 2 + d]
                    if StepTimeSimulation.linkCarries(layout, src: src, dst: dst, direction: direction) { out.append(ExposedComm(src: src, dst: dst, direction: direction, seconds: s)) }
                }
            }
        }
        exposedComm = out
        self.events = events
        if keepSpans {
            self.spans = spans
            self.messages = messages
            self.waits = waits
            // Walk back from the span that ends last: a span waited on a message or followed its rank's previous
            // span; a message followed the span that produced it, or the message ahead of it on a busy link.
            var path: [PathItem] = []
            var s = spans.indices.max { spans[$0].end < spans[$1].end || (spans[$0].end == spans[$1].end && $0 > $1) }
            while let si = s {
                path.append(.compute(spans[si]))
                if spanCause[si] >= 0 {
                    var mi = spanCause[si]
                    while true {
                        path.append(.transfer(messages[mi]))
                        if messageQueuedBehind[mi] >= 0 { mi = messageQueuedBehind[mi] } else { break }
                    }
                    s = messageProducer[mi] >= 0 ? messageProducer[mi] : nil
                } else {
                    s = spanPrevious[si] >= 0 ? spanPrevious[si] : nil
                }
            }
            criticalPath = path.reversed()
        } else {
            self.spans = nil
            self.messages = nil
            self.waits = nil
            criticalPath = nil
        }
    }

    /// Whether any hop sends `direction` messages from `src` to `dst`.
    private static func linkCarries(_ layout: Layout, src: Int, dst: Int, direction: Direction) -> Bool {
        (0..<layout.hops).contains { k in
            let key = HopKey(direction: direction, hop: k, microbatch: 0)
            return key.source(layout) == src && key.destination(layout) == dst
        }
    }

    /// Idle fraction of each rank over the pipeline's span (first forward to last backward anywhere), as
    /// `ChromeTrace.bubbleFractions` measures a real run.
    public var bubble: [Double] { busySeconds.map { pipelineSeconds == 0 ? 0 : 1 - $0 / pipelineSeconds } }

    /// Seconds on the critical path spent computing and spent on messages a rank waited for.
    public var criticalPathSplit: (compute: Double, communication: Double)? {
        guard let path = criticalPath else { return nil }
        var compute = 0.0
        for item in path { if case .compute(let s) = item { compute += s.end - s.start } }
        return (compute, pipelineSeconds - compute)
    }
}

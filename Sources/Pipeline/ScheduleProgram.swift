/// One compute item of a rank's order: a forward or a backward of (global) chunk `chunk` on `microbatch`.
public typealias ComputeItem = (forward: Bool, chunk: Int, microbatch: Int)

/// The one generator of every built-in schedule's per-rank compute order, one item at a time, in O(V) memory per
/// rank (plus Megatron's shared m·V table). `Schedule` stores what this yields; `StepTimeSimulation` replays it
/// without storing it, which is what lets a replay of 10⁸ actions fit in memory and run in seconds.
///
/// Every schedule walks one skeleton: W warm-up forwards, then one forward and one backward in turn, then the
/// remaining backwards, over T = m·V forwards and as many backwards. The kinds differ only in W and in which
/// (chunk, microbatch) the k-th forward and j-th backward run:
/// - GPipe: W = T, forward k and backward k on microbatch k;
/// - 1F1B: W = min(P − r − 1, m), same items;
/// - interleaved: `InterleavedRule`'s warm-up and items (Megatron's table, or torch's per-stage counters).
public struct ComputeOrder: IteratorProtocol, Sequence {
    private enum Items {
        case single
        case megatron(table: [(microbatch: Int, chunk: Int)])
        /// torch: microbatches per round, and how many forwards and backwards each local stage has run.
        case torch(perRound: Int, forwardsRun: [Int], backwardsRun: [Int])
    }

    private let rank: Int, ranks: Int, virtualStages: Int
    private let total: Int, warmup: Int
    private var items: Items
    /// Position in the rank's 2·T items.
    private var position = 0

    /// Rank `rank`'s order under `kind`. Callers validate first (`Schedule.validate`).
    public init(_ kind: ScheduleKind, layout: Layout, microbatches m: Int, microbatchGroup: Int? = nil, rank r: Int) {
        let rule = InterleavedRule(kind, ranks: layout.ranks, group: microbatchGroup)
        self.init(kind, layout: layout, microbatches: m, rank: r,
                  megatronTable: kind == .interleaved1F1B
                      ? InterleavedRule.megatronTable(microbatches: m, chunks: layout.virtualStages, group: rule.megatronGroup) : nil,
                  rule: rule)
    }

    /// With Megatron's table built once and shared by every rank's order.
    init(_ kind: ScheduleKind, layout: Layout, microbatches m: Int, rank r: Int,
         megatronTable: [(microbatch: Int, chunk: Int)]?, rule: InterleavedRule) {
        rank = r
        ranks = layout.ranks
        virtualStages = layout.virtualStages
        let v = layout.virtualStages, p = layout.ranks
        total = m * v
        switch kind {
        case .gpipe:
            warmup = total
            items = .single
        case .oneFOneB:
            warmup = Swift.min(p - r - 1, m)
            items = .single
        case .interleaved1F1B:
            warmup = Swift.min((p - r - 1) * 2 + (v - 1) * rule.megatronGroup, total)
            items = .megatron(table: megatronTable!)
        case .interleaved1F1BTorch:
            let mpr = rule.microbatchesPerRound(m)
            warmup = Swift.min((v - 1) * mpr + 2 * (p - 1 - r), total)
            items = .torch(perRound: mpr, forwardsRun: [Int](repeating: 0, count: v), backwardsRun: [Int](repeating: 0, count: v))
        }
    }

    /// Forwards and backwards this order yields in all (2·m·V).
    public var count: Int { 2 * total }

    public mutating func next() -> ComputeItem? {
        let n = position
        guard n < 2 * total else { return nil }
        position += 1
        let steadyEnd = 2 * total - warmup
        if n < warmup { return forward(n) }
        if n < steadyEnd { let i = (n - warmup) / 2; return (n - warmup) % 2 == 0 ? forward(warmup + i) : backward(i) }
        return backward(n - total)
    }

    /// The k-th forward (called in increasing k, as torch's counters need).
    private mutating func forward(_ k: Int) -> ComputeItem {
        switch items {
        case .single: return (true, rank, k)
        case .megatron(let table): return (true, table[k].chunk * ranks + rank, table[k].microbatch)
        case .torch(let mpr, var forwards, let backwards):
            let s = (k / mpr) % virtualStages
            let mb = forwards[s]
            items = .single  // drop the reference so the counters are mutated in place, not copied
            forwards[s] += 1
            items = .torch(perRound: mpr, forwardsRun: forwards, backwardsRun: backwards)
            return (true, s * ranks + rank, mb)
        }
    }

    /// The j-th backward (called in increasing j).
    private mutating func backward(_ j: Int) -> ComputeItem {
        switch items {
        case .single: return (false, rank, j)
        case .megatron(let table): return (false, (virtualStages - 1 - table[j].chunk) * ranks + rank, table[j].microbatch)
        case .torch(let mpr, let forwards, var backwards):
            let s = virtualStages - 1 - (j / mpr) % virtualStages
            let mb = backwards[s]
            items = .single
            backwards[s] += 1
            items = .torch(perRound: mpr, forwardsRun: forwards, backwardsRun: backwards)
            return (false, s * ranks + rank, mb)
        }
    }
}

/// A rank's program from its compute order: each forward wrapped in the receive of its input (not on chunk 0) and
/// the send of its output (not on the last chunk), each backward in the receive of its output's gradient and the
/// send of its input's gradient. The one place that rule lives: `Schedule` stores what this yields.
public struct RankProgram<Order: IteratorProtocol>: IteratorProtocol, Sequence where Order.Element == ComputeItem {
    private var order: Order
    private let chunks: Int
    /// The compute item being wrapped, and how far: 0 = its receive is next, 1 = the compute, 2 = the send.
    private var item: ComputeItem?
    private var stage = 0

    public init(_ order: Order, chunks: Int) { self.order = order; self.chunks = chunks }

    public mutating func next() -> Action? {
        while true {
            if item == nil { guard let i = order.next() else { return nil }; item = i; stage = 0 }
            let (forward, c, m) = item!
            switch stage {
            case 0:
                stage = 1
                if forward ? c > 0 : c < chunks - 1 { return forward ? .recvForward(chunk: c, microbatch: m) : .recvBackward(chunk: c, microbatch: m) }
            case 1:
                stage = 2
                return forward ? .forward(chunk: c, microbatch: m) : .backward(chunk: c, microbatch: m)
            default:
                item = nil
                if forward ? c < chunks - 1 : c > 0 { return forward ? .sendForward(chunk: c, microbatch: m) : .sendBackward(chunk: c, microbatch: m) }
            }
        }
    }
}

/// A validated built-in schedule that is not stored: each rank's program is generated as it is read. `Schedule`
/// is this, materialised; the step-time replay reads this directly at scales where storing 10⁸ actions would cost
/// gigabytes.
public struct ScheduleProgram: Sendable {
    public let kind: ScheduleKind
    public let layout: Layout
    public let microbatches: Int
    public let microbatchGroup: Int?
    private let megatronTable: [(microbatch: Int, chunk: Int)]?

    public init(kind: ScheduleKind, layout: Layout, microbatches: Int, microbatchGroup: Int? = nil) throws {
        try Schedule.validate(kind, layout: layout, microbatches: microbatches, microbatchGroup: microbatchGroup)
        self.kind = kind
        self.layout = layout
        self.microbatches = microbatches
        self.microbatchGroup = microbatchGroup
        megatronTable = kind == .interleaved1F1B
            ? InterleavedRule.megatronTable(microbatches: microbatches, chunks: layout.virtualStages,
                                            group: InterleavedRule(kind, ranks: layout.ranks, group: microbatchGroup).megatronGroup)
            : nil
    }

    /// Rank r's compute order.
    public func computeOrder(rank r: Int) -> ComputeOrder {
        ComputeOrder(kind, layout: layout, microbatches: microbatches, rank: r, megatronTable: megatronTable,
                     rule: InterleavedRule(kind, ranks: layout.ranks, group: microbatchGroup))
    }

    /// Rank r's program, receives and sends included.
    public func program(rank r: Int) -> RankProgram<ComputeOrder> { RankProgram(computeOrder(rank: r), chunks: layout.chunks) }

    /// Actions in all ranks' programs: 6·P·V·m minus the sends and receives chunk 0 and the last chunk do not have.
    public var actionCount: Int { (6 * layout.chunks - 4) * microbatches }
}

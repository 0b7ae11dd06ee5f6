import Wire

/// A directed link between two ranks, in one direction of training, for one kind of tensor.
public struct LinkKey: Hashable, Sendable, Comparable, Codable {
    public let src: Int
    public let dst: Int
    public let direction: Direction
    public let kind: TensorKind

    public init(src: Int, dst: Int, direction: Direction, kind: TensorKind) {
        self.src = src; self.dst = dst; self.direction = direction; self.kind = kind
    }

    public static func < (a: LinkKey, b: LinkKey) -> Bool {
        (a.direction, a.src, a.dst, a.kind) < (b.direction, b.src, b.dst, b.kind)
    }
}

/// Everything a run's configuration decides about traffic, without running it.
public struct TrafficConfig: Sendable, Equatable {
    public var layout: Layout
    public var residual: ResidualConfig
    public var schedule: ScheduleKind
    public var microbatches: Int
    public var microbatchSize: Int
    public var seq: Int
    public var hidden: Int
    public var bytesPerElement: Int = 4

    public init(layout: Layout, residual: ResidualConfig, schedule: ScheduleKind, microbatches: Int,
                microbatchSize: Int, seq: Int, hidden: Int) {
        self.layout = layout; self.residual = residual; self.schedule = schedule
        self.microbatches = microbatches; self.microbatchSize = microbatchSize; self.seq = seq; self.hidden = hidden
    }

    /// Bytes of one b·s·d tensor.
    public var activationBytes: Int {
        HopPlan.activationBytes(microbatchSize: microbatchSize, seq: seq, hidden: hidden, bytesPerElement: bytesPerElement)
    }
}

/// The analytical traffic model (DESIGN §4): bytes per hop, per link, per direction, per kind; peak tensors
/// per hop; peak cached bytes per rank. Pure arithmetic over the hop plan and the schedule's per-rank order,
/// valid at any scale (nothing is allocated per element).
public struct TrafficPrediction: Sendable {
    public let config: TrafficConfig
    public let plan: HopPlan
    /// Forward tensors per hop, per microbatch (hop 0 … C−2).
    public var tensorsPerHop: [Int] { plan.tensors.map(\.count) }
    /// Payload bytes per step on each link.
    public let links: [LinkKey: Int]
    /// Peak bytes of the cross-stage cache on each rank over one step.
    public let peakCachedBytes: [Int]

    public init(_ config: TrafficConfig) throws {
        self.config = config
        let plan = HopPlan(layout: config.layout, residual: config.residual)
        self.plan = plan
        let act = config.activationBytes
        var links: [LinkKey: Int] = [:]
        for (k, roles) in plan.tensors.enumerated() {
            let src = config.layout.rank(ofChunk: k), dst = config.layout.rank(ofChunk: k + 1)
            for role in roles {
                links[LinkKey(src: src, dst: dst, direction: .forward, kind: role.kind), default: 0] += act * config.microbatches
                links[LinkKey(src: dst, dst: src, direction: .backward, kind: role.kind), default: 0] += act * config.microbatches
            }
        }
        self.links = links
        let schedule = try Schedule(kind: config.schedule, layout: config.layout, microbatches: config.microbatches)
        peakCachedBytes = (0..<config.layout.ranks).map { r in
            var cache = CrossStageCacheLedger()
            for a in schedule.actions[r] { cache.apply(a, plan: plan) }
            return cache.peakEntries * act
        }
    }

    public var forwardPayloadBytesPerStep: Int { links.filter { $0.key.direction == .forward }.values.reduce(0, +) }
    public var backwardPayloadBytesPerStep: Int { links.filter { $0.key.direction == .backward }.values.reduce(0, +) }
    public var payloadBytesPerStep: Int { forwardPayloadBytesPerStep + backwardPayloadBytesPerStep }
    /// Frame-header bytes per step: every hop message (forward and backward, per microbatch) has the fixed
    /// header plus one descriptor per tensor (docs/protocol.md; the sizes are Wire's).
    public var headerBytesPerStep: Int {
        tensorsPerHop.map { Frame.fixedHeaderBytes + Frame.descriptorBytes * $0 }.reduce(0, +) * 2 * config.microbatches
    }

    /// Largest number of tensors any forward hop carries for one microbatch.
    public var peakTensorsPerHop: Int { tensorsPerHop.max() ?? 0 }
}

/// Book-keeping of which blocks a rank caches per microbatch, driven by its actions. The worker uses it to
/// account real buffers and the model uses it to predict the peak: one implementation for both.
public struct CrossStageCacheLedger: Sendable {
    /// Cached block indices per microbatch.
    public private(set) var entries: [Int: Set<Int>] = [:]
    public private(set) var peakEntries = 0

    public init() {}

    /// Blocks cached for all microbatches in flight.
    public var currentEntries: Int { entries.values.reduce(0) { $0 + $1.count } }

    /// Forward of chunk c stores what it received and (cross-stage) produced; the backward of the rank's first
    /// chunk for a microbatch frees that microbatch's cache.
    public mutating func apply(_ action: Action, plan: HopPlan) {
        switch action {
        case .forward(let c, let m):
            let add = plan.cachedBlocks(byChunk: c)
            if !add.isEmpty { entries[m, default: []].formUnion(add) }
            peakEntries = max(peakEntries, currentEntries)
        case .backward(let c, let m):
            if plan.layout.virtualStage(ofChunk: c) == 0 { entries[m] = nil }
        default: break
        }
    }
}

import Model
import Numerics

/// Every rank's links in one process: a message sent is queued until its receiver takes it, and its payload bytes
/// are counted per link as a real run counts them. For tests and for checking a configuration without processes.
public final class InMemoryNetwork<Value> {
    let layout: Layout
    let byteCount: (Value) -> Int
    private var queue: [HopKey: (roles: [TensorRole], values: [Value])] = [:]
    /// Payload bytes per link over everything sent.
    public private(set) var links: [LinkKey: Int] = [:]
    /// Most forward tensors one microbatch carried on each hop.
    public private(set) var tensorsPerHop: [Int]
    /// Messages sent.
    public private(set) var messages = 0
    /// Every message in the order it was received.
    public private(set) var delivered: [HopKey] = []

    public init(layout: Layout, byteCount: @escaping (Value) -> Int) {
        self.layout = layout
        self.byteCount = byteCount
        tensorsPerHop = [Int](repeating: 0, count: layout.hops)
    }

    /// The channel of rank `rank`.
    public func channel(rank: Int) -> Channel { Channel(network: self, rank: rank) }

    /// Messages sent and not yet received.
    public var pending: [HopKey] { Array(queue.keys) }

    public struct Channel: HopChannel {
        let network: InMemoryNetwork
        let rank: Int

        public mutating func send(_ key: HopKey, roles: [TensorRole], values: [Value]) throws {
            try network.send(key, from: rank, roles: roles, values: values)
        }

        public mutating func receive(_ key: HopKey, roles: [TensorRole]) throws -> [Value]? {
            try network.receive(key, at: rank, roles: roles)
        }
    }

    /// Why a message was refused.
    public enum Failure: Error, CustomStringConvertible {
        case wrongRank(HopKey, rank: Int, expected: Int)
        case duplicate(HopKey)
        case wrongRoles(HopKey, expected: [TensorRole], got: [TensorRole])

        public var description: String {
            switch self {
            case let .wrongRank(k, r, e): return "rank \(r) used \(k), which belongs to rank \(e)"
            case let .duplicate(k): return "\(k) sent twice"
            case let .wrongRoles(k, e, g): return "\(k): expected \(e), received \(g)"
            }
        }
    }

    func send(_ key: HopKey, from rank: Int, roles: [TensorRole], values: [Value]) throws {
        guard key.source(layout) == rank else { throw Failure.wrongRank(key, rank: rank, expected: key.source(layout)) }
        guard queue[key] == nil else { throw Failure.duplicate(key) }
        queue[key] = (roles, values)
        messages += 1
        let src = key.source(layout), dst = key.destination(layout)
        for (role, v) in zip(roles, values) {
            links[LinkKey(src: src, dst: dst, direction: key.direction, kind: role.kind), default: 0] += byteCount(v)
        }
        if key.direction == .forward { tensorsPerHop[key.hop] = max(tensorsPerHop[key.hop], values.count) }
    }

    func receive(_ key: HopKey, at rank: Int, roles: [TensorRole]) throws -> [Value]? {
        guard key.destination(layout) == rank else { throw Failure.wrongRank(key, rank: rank, expected: key.destination(layout)) }
        guard let m = queue.removeValue(forKey: key) else { return nil }
        guard m.roles == roles else { throw Failure.wrongRoles(key, expected: roles, got: m.roles) }
        delivered.append(key)
        return m.values
    }
}

/// Runs every rank's executor of one step in one process, round-robin: each rank goes as far as its messages let
/// it. No rank able to go on before all are done is a deadlock, reported with each stuck rank's next action.
public enum InMemoryCluster {
    public struct Deadlock: Error, CustomStringConvertible {
        public let step: Int
        public let stuck: [(rank: Int, waitingFor: HopKey)]
        public var description: String {
            "step \(step) deadlocks: " + stuck.map { "rank \($0.rank) waits for \($0.waitingFor)" }.joined(separator: ", ")
        }
    }

    public static func runStep<B: ChunkBackend>(_ executors: inout [RankExecutor<B>], network: InMemoryNetwork<B.Value>,
                                                step: Int) throws {
        var channels = executors.indices.map { network.channel(rank: $0) }
        for r in executors.indices { executors[r].begin(step: step) }
        var waiting: [Int: HopKey] = [:]
        while true {
            var progressed = false
            for r in executors.indices where !executors[r].isStepDone {
                let before = executors[r].nextAction
                switch try executors[r].advance(&channels[r]) {
                case .waiting(let k): waiting[r] = k; if executors[r].nextAction != before { progressed = true }
                case .stepDone: waiting[r] = nil; progressed = true
                case .performed: progressed = true
                }
            }
            if executors.allSatisfy(\.isStepDone) { return }
            if !progressed {
                throw Deadlock(step: step, stuck: waiting.keys.sorted().map { ($0, waiting[$0]!) })
            }
        }
    }
}

/// What a compute-mode pipeline run in one process produced.
public struct InMemoryTraining {
    /// The mean loss of every step.
    public var losses: [Float]
    /// Every chunk's parameters after the last step, merged under the model's names.
    public var parameters: ParameterSet
    /// The gradients of the first step (before its update), merged under the model's names.
    public var firstGradients: ParameterSet
    /// Payload bytes per link over all steps.
    public var links: [LinkKey: Int]
    public var tensorsPerHop: [Int]
    public var messages: Int
    /// Peak cross-stage cache bytes per rank.
    public var peakCachedBytes: [Int]
    /// Deposit slots opened and collected, summed over ranks.
    public var depositSlots: (opened: Int, collected: Int)

    /// Trains `steps` steps of `model` on the pipeline of `plan` and `schedule`, every rank in this process.
    public static func run(model: ModelConfig, plan: HopPlan, schedule: Schedule, microbatchSize: Int, seed: UInt64,
                           learningRate: Float, steps: Int) throws -> InMemoryTraining {
        let layout = plan.layout
        var executors = try (0..<layout.ranks).map { r in
            RankExecutor(rank: r, plan: plan, schedule: schedule,
                         backend: try ComputeBackend(config: model, layout: layout, rank: r, microbatches: schedule.microbatches,
                                                     microbatchSize: microbatchSize, seed: seed, learningRate: learningRate))
        }
        let network = InMemoryNetwork<Tensor>(layout: layout) { $0.count * 4 }
        var losses: [Float] = []
        var firstGradients = ParameterSet()
        for step in 0..<steps {
            for r in executors.indices { executors[r].backend.begin(globalStep: step + 1) }
            try InMemoryCluster.runStep(&executors, network: network, step: step)
            if step == 0 { for e in executors { for g in e.backend.gradients.values { firstGradients.merge(g) } } }
            var loss: Float?
            for r in executors.indices { if let l = executors[r].backend.finishStep() { loss = l } }
            losses.append(loss!)
        }
        var merged = ParameterSet()
        for e in executors { for p in e.backend.parameters.values { merged.merge(p) } }
        return InMemoryTraining(losses: losses, parameters: merged, firstGradients: firstGradients, links: network.links, tensorsPerHop: network.tensorsPerHop,
                                messages: network.messages, peakCachedBytes: executors.map(\.cache.peakBytes),
                                depositSlots: (executors.reduce(0) { $0 + $1.cache.slotsOpened },
                                               executors.reduce(0) { $0 + $1.cache.slotsCollected }))
    }
}

import Model

/// Executes every rank's action list against the others in memory, with the rank executor itself: sends never
/// block (as with an unbounded ZeroMQ queue), a receive waits for its matching send. Compute actions take one time
/// slot each, so the result is also the schedule's rank × slot grid and its theoretical bubble.
public struct ScheduleSimulation: Sendable {
    /// Time slot of every compute action, per rank (same order as the rank's compute actions).
    public let slots: [[(action: Action, slot: Int)]]
    /// Length of the step in slots.
    public let makespan: Int
    /// Every hop message in the order it was received.
    public let deliveries: [Delivery]

    public struct Delivery: Sendable, Equatable {
        public let direction: Direction
        /// Hop index k (chunk k ↔ chunk k+1).
        public let hop: Int
        public let microbatch: Int
        public let from: Int
        public let to: Int
    }

    /// Why a simulation failed.
    public enum Failure: Error, CustomStringConvertible {
        /// No rank can make progress; each stuck rank's next action, and the grid up to there.
        case deadlock(stuck: [(rank: Int, action: Action)], grid: String)
        /// A rank ran another rank's action, or a message was sent or received twice.
        case mismatch(String)

        public var description: String {
            switch self {
            case .deadlock(let stuck, let grid):
                return "schedule deadlocks: " + stuck.map { "rank \($0.rank) waits at \($0.action)" }.joined(separator: ", ") + "\n" + grid
            case .mismatch(let s): return "schedule mismatch: \(s)"
            }
        }
    }

    /// Unit-time compute: a tensor's value is the slot after which it exists; a chunk starts when its rank is free
    /// and its inputs have arrived, and takes one slot.
    struct UnitTime: ChunkBackend {
        let layout: Layout
        let rank: Int
        var clock = 0
        var slots: [(action: Action, slot: Int)] = []

        mutating func run(_ a: Action, after inputs: [Int]) throws -> Int {
            guard layout.rank(ofChunk: a.chunk) == rank else { throw Failure.mismatch("rank \(rank) runs \(a) of another rank") }
            let start = max(clock, inputs.max() ?? 0)
            slots.append((a, start))
            clock = start + 1
            return clock
        }

        mutating func forward(chunk c: Int, microbatch m: Int, input: HopValues<Int>?) throws -> HopValues<Int>? {
            let done = try run(.forward(chunk: c, microbatch: m), after: input?.tensors ?? [])
            return c < layout.chunks - 1 ? HopValues(hidden: done) : nil
        }

        mutating func backward(chunk c: Int, microbatch m: Int, gradOutput: HopValues<Int>?) throws -> HopValues<Int>? {
            let done = try run(.backward(chunk: c, microbatch: m), after: gradOutput?.tensors ?? [])
            return c > 0 ? HopValues(hidden: done) : nil
        }

        func zeroGradient(_ role: TensorRole, microbatch: Int, hop: Int) -> Int { 0 }
        func accumulate(_ sum: inout Int, _ contribution: Int, role: TensorRole, microbatch: Int) throws { sum = max(sum, contribution) }
        func byteCount(_ value: Int) -> Int { 0 }
    }

    public init(_ schedule: Schedule) throws {
        let layout = schedule.layout
        // What a hop carries does not change when a rank may start: one hidden state per hop.
        let plan = HopPlan(layout: layout, residual: ResidualConfig(kind: .standard, blocks: 1, cache: .none))
        var executors = (0..<layout.ranks).map {
            RankExecutor(rank: $0, plan: plan, schedule: schedule, backend: UnitTime(layout: layout, rank: $0), explainsFailures: false)
        }
        let network = InMemoryNetwork<Int>(layout: layout) { _ in 0 }
        do {
            try InMemoryCluster.runStep(&executors, network: network, step: 0)
        } catch is InMemoryCluster.Deadlock {
            let slots = executors.map(\.backend.slots)
            throw Failure.deadlock(stuck: executors.filter { !$0.isStepDone }.map { ($0.rank, $0.nextAction!) },
                                   grid: ScheduleGrid.render(slots: slots, makespan: executors.map(\.backend.clock).max() ?? 0, mark: nil))
        } catch let e as ExecutorError {
            throw Failure.mismatch("\(e.cause) (rank \(e.rank)\(e.action.map { ", \($0)" } ?? ""))")
        } catch {
            throw Failure.mismatch("\(error)")
        }
        slots = executors.map(\.backend.slots)
        makespan = executors.map(\.backend.clock).max() ?? 0
        deliveries = network.delivered.map {
            Delivery(direction: $0.direction, hop: $0.hop, microbatch: $0.microbatch, from: $0.source(layout), to: $0.destination(layout))
        }
    }

    /// Fraction of rank-slots left idle (the schedule's theoretical bubble, unit-time compute).
    public var bubbleFraction: Double {
        let busy = slots.reduce(0) { $0 + $1.count }
        let total = makespan * slots.count
        return total == 0 ? 0 : 1 - Double(busy) / Double(total)
    }

    /// Idle fraction per rank over the step's makespan.
    public var bubbleFractionPerRank: [Double] {
        slots.map { makespan == 0 ? 0 : 1 - Double($0.count) / Double(makespan) }
    }
}

/// Prints and parses the rank × slot grid of compute actions (`2F0` = chunk 2, forward, microbatch 0).
public enum ScheduleGrid {
    public static func render(slots: [[(action: Action, slot: Int)]], makespan: Int, mark: (rank: Int, slot: Int)?) -> String {
        var cells = [[String]](repeating: [String](repeating: ".", count: makespan), count: slots.count)
        for (r, list) in slots.enumerated() { for (a, t) in list where t < makespan { cells[r][t] = a.description } }
        if let mark, mark.rank < cells.count, mark.slot < makespan { cells[mark.rank][mark.slot] = "*" + cells[mark.rank][mark.slot] }
        let width = max(3, cells.joined().map(\.count).max() ?? 3)
        var lines: [String] = []
        lines.append("rank | " + (0..<makespan).map { pad(String($0), width) }.joined(separator: " "))
        for (r, row) in cells.enumerated() {
            lines.append(pad(String(r), 4) + " | " + row.map { pad($0, width) }.joined(separator: " "))
        }
        return lines.joined(separator: "\n")
    }

    /// Parses a grid printed by `render` back into each rank's compute order (forward?, chunk, microbatch).
    public static func parse(_ text: String) throws -> [[Action]] {
        var ranks: [[Action]] = []
        for line in text.split(separator: "\n").dropFirst() {
            let parts = line.split(separator: "|", maxSplits: 1)
            guard parts.count == 2 else { throw ScheduleSimulation.Failure.mismatch("grid line without '|': \(line)") }
            var row: [Action] = []
            for cell in parts[1].split(separator: " ") where cell != "." {
                let s = cell.hasPrefix("*") ? String(cell.dropFirst()) : String(cell)
                let isForward = s.contains("F")
                let pieces = s.split(separator: isForward ? "F" : "B")
                guard pieces.count == 2, let c = Int(pieces[0]), let m = Int(pieces[1]) else {
                    throw ScheduleSimulation.Failure.mismatch("cannot parse grid cell '\(cell)'")
                }
                row.append(isForward ? .forward(chunk: c, microbatch: m) : .backward(chunk: c, microbatch: m))
            }
            ranks.append(row)
        }
        return ranks
    }

    private static func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
}

extension Schedule {
    /// Rebuilds a schedule from per-rank compute orders (for instance a parsed grid), adding communication.
    public init(kind: ScheduleKind, layout: Layout, microbatches: Int, computeOrder: [[Action]]) {
        self.kind = kind
        self.layout = layout
        self.microbatches = microbatches
        actions = computeOrder.map { row in
            Schedule.withCommunication(row.map { a in
                if case .forward = a { return (true, a.chunk, a.microbatch) }
                return (false, a.chunk, a.microbatch)
            }, chunks: layout.chunks)
        }
    }

    /// The rank × slot grid of this schedule.
    public func grid() throws -> String {
        let sim = try ScheduleSimulation(self)
        return ScheduleGrid.render(slots: sim.slots, makespan: sim.makespan, mark: nil)
    }
}

/// Executes every rank's action list against the others in memory: sends never block (as with an unbounded
/// ZeroMQ queue), a receive waits for its matching send. Compute actions take one time slot each, so the
/// result is also the schedule's rank × slot grid and its theoretical bubble.
public struct ScheduleSimulation: Sendable {
    /// Time slot of every compute action, per rank (same order as the rank's compute actions).
    public let slots: [[(action: Action, slot: Int)]]
    /// Length of the step in slots.
    public let makespan: Int
    /// The order in which hops were delivered, as (hop message key, sender rank, receiver rank).
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
        /// No rank can make progress; each stuck rank's next action.
        case deadlock(stuck: [(rank: Int, action: Action)], grid: String)
        /// A receive matched a send from the wrong rank, or a message was sent twice.
        case mismatch(String)
        /// Messages that were sent but never received.
        case unconsumed([String])

        public var description: String {
            switch self {
            case .deadlock(let stuck, let grid):
                return "schedule deadlocks: " + stuck.map { "rank \($0.rank) waits at \($0.action)" }.joined(separator: ", ") + "\n" + grid
            case .mismatch(let s): return "schedule mismatch: \(s)"
            case .unconsumed(let s): return "messages never received: \(s.joined(separator: ", "))"
            }
        }
    }

    private struct Key: Hashable { let direction: Direction; let hop: Int; let microbatch: Int }

    public init(_ schedule: Schedule) throws {
        let layout = schedule.layout
        let p = layout.ranks
        var pc = [Int](repeating: 0, count: p)
        var clock = [Int](repeating: 0, count: p)
        var sent: [Key: (time: Int, from: Int)] = [:]
        var received: Set<Key> = []
        var slots = [[(action: Action, slot: Int)]](repeating: [], count: p)
        var deliveries: [Delivery] = []

        func messageKey(_ a: Action) -> (Key, peer: Int)? {
            switch a {
            case .sendForward(let c, let m): return (Key(direction: .forward, hop: c, microbatch: m), layout.rank(ofChunk: c + 1))
            case .recvForward(let c, let m): return (Key(direction: .forward, hop: c - 1, microbatch: m), layout.rank(ofChunk: c - 1))
            case .sendBackward(let c, let m): return (Key(direction: .backward, hop: c - 1, microbatch: m), layout.rank(ofChunk: c - 1))
            case .recvBackward(let c, let m): return (Key(direction: .backward, hop: c, microbatch: m), layout.rank(ofChunk: c + 1))
            default: return nil
            }
        }

        while true {
            var progressed = false
            for r in 0..<p {
                let program = schedule.actions[r]
                while pc[r] < program.count {
                    let a = program[pc[r]]
                    switch a {
                    case .forward, .backward:
                        guard layout.rank(ofChunk: a.chunk) == r else { throw Failure.mismatch("rank \(r) runs \(a) of another rank") }
                        slots[r].append((a, clock[r]))
                        clock[r] += 1
                    case .sendForward, .sendBackward:
                        let (key, _) = messageKey(a)!
                        guard sent[key] == nil else { throw Failure.mismatch("\(a) on rank \(r) sent twice") }
                        sent[key] = (clock[r], r)
                    case .recvForward, .recvBackward:
                        let (key, peer) = messageKey(a)!
                        guard let s = sent[key] else { break }
                        guard s.from == peer else { throw Failure.mismatch("\(a) on rank \(r) matched a send from rank \(s.from), expected \(peer)") }
                        guard received.insert(key).inserted else { throw Failure.mismatch("\(a) on rank \(r) received twice") }
                        clock[r] = max(clock[r], s.time)
                        deliveries.append(Delivery(direction: key.direction, hop: key.hop, microbatch: key.microbatch, from: peer, to: r))
                    }
                    if case .recvForward = a, !received.contains(messageKey(a)!.0) { break }
                    if case .recvBackward = a, !received.contains(messageKey(a)!.0) { break }
                    pc[r] += 1
                    progressed = true
                }
            }
            if (0..<p).allSatisfy({ pc[$0] == schedule.actions[$0].count }) { break }
            if !progressed {
                let stuck = (0..<p).filter { pc[$0] < schedule.actions[$0].count }.map { ($0, schedule.actions[$0][pc[$0]]) }
                let partial = ScheduleGrid.render(slots: slots, makespan: clock.max() ?? 0, mark: nil)
                throw Failure.deadlock(stuck: stuck, grid: partial)
            }
        }
        let leftover = Set(sent.keys).subtracting(received)
        guard leftover.isEmpty else {
            throw Failure.unconsumed(leftover.map { "\($0.direction.rawValue) hop \($0.hop) mb \($0.microbatch)" }.sorted())
        }
        self.slots = slots
        self.makespan = clock.max() ?? 0
        self.deliveries = deliveries
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

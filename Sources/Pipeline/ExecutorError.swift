import Model

/// A rank that cannot go on: which rank, at which step and action, and what does not hold, with the schedule's
/// rank × slot grid and the failing slot marked (STYLE: a failing run prints the grid).
public struct ExecutorError: Error, CustomStringConvertible {
    public enum Invariant: Equatable, Sendable, CustomStringConvertible {
        /// The cache differs from the ledger the traffic model predicts it with.
        case cacheMatchesLedger(held: [Int], ledger: [Int], microbatch: Int)
        /// A chunk's input block is neither on the wire nor in the rank's cache.
        case inputAvailable(TensorRole, microbatch: Int)
        /// A block the plan says this chunk caches is in neither its input nor its output.
        case cachedBlockAvailable(block: Int, microbatch: Int)
        /// A block was read from the cache but no chunk of this rank owns its deposits.
        case depositHasOwner(block: Int, microbatch: Int)
        /// Deposits left once the rank's first chunk has finished the microbatch's backward.
        case depositsCollected(blocks: [Int], microbatch: Int)
        /// The backend returned a state without a tensor the hop plan needs.
        case backendProduced(TensorRole, microbatch: Int)
        /// Something left at the end of a step (unsent outputs, unused inputs, cache entries).
        case stepDrained(String)
        /// A receive or a send found its message missing or duplicated.
        case messageOnce(String)

        public var description: String {
            switch self {
            case let .cacheMatchesLedger(held, ledger, m):
                return "cache for microbatch \(m) holds \(held.map { "b\($0)" }), the ledger says \(ledger.map { "b\($0)" })"
            case let .inputAvailable(role, m): return "input \(role) of microbatch \(m) was neither received nor cached"
            case let .cachedBlockAvailable(n, m): return "should cache b\(n) of microbatch \(m) but does not hold it"
            case let .depositHasOwner(n, m): return "read b\(n) of microbatch \(m) from the cache, but no chunk of the rank owns its deposits"
            case let .depositsCollected(blocks, m):
                return "gradient deposits for \(blocks.map { "b\($0)" }) of microbatch \(m) left after the rank's first chunk"
            case let .backendProduced(role, m): return "the chunk produced no \(role) for microbatch \(m)"
            case .stepDrained(let s): return "step ended with \(s)"
            case .messageOnce(let s): return s
            }
        }
    }

    /// What went wrong: an invariant of the executor, or the backend's or the channel's own error.
    public enum Cause: CustomStringConvertible {
        case invariant(Invariant)
        case failure(Error)

        public var description: String {
            switch self {
            case .invariant(let i): return "invariant violated: \(i)"
            case .failure(let e): return "\(e)"
            }
        }
    }

    public let rank: Int
    /// 0-based step of the run.
    public let step: Int
    /// The action that failed (nil: at the end of the step).
    public let action: Action?
    public let cause: Cause
    /// The schedule's grid with the failing slot marked.
    public let grid: String

    public var invariant: Invariant? { if case .invariant(let i) = cause { return i }; return nil }

    public var description: String {
        "rank \(rank), \(action.map { "action \($0)" } ?? "end of step") (step index \(step) of the run): \(cause)\n\(grid)"
    }

    /// The grid of `schedule` with the compute slot of `action` on `rank` marked `*` and its row ending in
    /// `<-- ERROR HERE`. A communication action marks the compute action it serves.
    static func grid(_ schedule: Schedule, rank: Int, action: Action?) -> String {
        guard let sim = try? ScheduleSimulation(schedule) else { return "(the schedule's grid could not be built)" }
        var mark: (rank: Int, slot: Int)?
        if let action {
            let compute: Action
            switch action {
            case .recvForward(let c, let m), .sendForward(let c, let m): compute = .forward(chunk: c, microbatch: m)
            case .recvBackward(let c, let m), .sendBackward(let c, let m): compute = .backward(chunk: c, microbatch: m)
            default: compute = action
            }
            if let slot = sim.slots[rank].first(where: { $0.action == compute })?.slot { mark = (rank, slot) }
        }
        var lines = ScheduleGrid.render(slots: sim.slots, makespan: sim.makespan, mark: mark).split(separator: "\n").map(String.init)
        if let mark {
            lines[mark.rank + 1] += "  <-- ERROR HERE (slot \(mark.slot): \(action!))"
        }
        return lines.joined(separator: "\n")
    }
}

/// A fault that names a rank or a step the run does not have would silently inject nothing, and a failure drill
/// that "passes" that way proves nothing; so it is an error before any process starts.
public struct FaultError: Error, CustomStringConvertible, Equatable {
    public let fault: Fault
    public let problem: String

    public var description: String { "--fault \(fault): \(problem)" }
}

extension Fault {
    /// The step the fault fires at, nil for faults that fire before the first step.
    public var step: Int? {
        switch self {
        case .kill(_, let s), .freeze(_, let s), .stall(_, let s), .killAfterSave(_, let s): return s
        case .neverJoin, .slow: return nil
        }
    }

    /// Checks that the fault's rank is one of the topology's ranks and its step one of the steps every variant
    /// runs (steps are counted from 0 within each variant, as the worker counts them).
    public func validate(against t: Topology) throws {
        guard (0..<t.ranks).contains(rank) else {
            throw FaultError(fault: self, problem: "rank \(rank) does not exist; this run has ranks 0…\(t.ranks - 1)")
        }
        if let step, !(0..<t.steps).contains(step) {
            throw FaultError(fault: self, problem: "step \(step) does not exist; this run has steps 0…\(t.steps - 1)")
        }
        if case .slow(_, let f) = self, !(f.isFinite && f > 1 && f <= Fault.slowest) {
            throw FaultError(fault: self, problem: "the slowdown factor must be a finite number > 1 and ≤ \(Int(Fault.slowest)), got \(f)")
        }
        if case .killAfterSave = self, t.mode != .compute {
            throw FaultError(fault: self, problem: "fires after a checkpoint is written: use mode compute with --save")
        }
    }

    /// Largest `slow:R×F` factor: beyond it a drill runs for hours and proves nothing more.
    public static let slowest = 100.0

    /// A `kill-after-save` fault must name a step after which the run writes a checkpoint (`checkpoints`: the
    /// run's `--save`, nil when it saves nothing), or it would inject nothing.
    public func validate(checkpoints: CheckpointPlan?, firstStep: Int, steps: Int) throws {
        guard case .killAfterSave(_, let s) = self else { return }
        guard let checkpoints else { throw FaultError(fault: self, problem: "fires after a checkpoint is written: give --save DIR") }
        guard checkpoints.writes(afterStep: s, firstStep: firstStep, steps: steps) else {
            throw FaultError(fault: self, problem: "no checkpoint is written after step \(s)"
                             + (checkpoints.every.map { " (--checkpoint-every \($0): after every step S with first_step + S + 1 a multiple of \($0), and the last)" } ?? " (only after the last step, \(steps - 1))"))
        }
    }
}

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
        case .kill(_, let s), .freeze(_, let s), .stall(_, let s): return s
        case .neverJoin: return nil
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
    }
}

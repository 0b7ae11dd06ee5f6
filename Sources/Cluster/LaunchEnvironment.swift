/// Where a worker started by a cluster launcher finds its rank, the launcher's world size and the coordinator's
/// endpoint: a pure function of the command line and the environment, so every rule is unit-tested without a
/// launcher (docs/multi-host.md, "Rank and endpoint").
///
/// Precedence: `--rank` and `--join` always win. Otherwise the rank comes from the launchers' variables, read in
/// this order: SLURM (`SLURM_PROCID`), OpenMPI (`OMPI_COMM_WORLD_RANK`), PMI, which MPICH's Hydra and srun's
/// `--mpi=pmi2` set (`PMI_RANK`), torchrun (`RANK`). When more than one is set they must agree: a worker started
/// by `mpirun` inside an `sbatch` script inherits the batch step's `SLURM_PROCID=0` next to its own
/// `OMPI_COMM_WORLD_RANK`, and guessing which one is meant would run two workers as the same rank. `--launcher`
/// reads one launcher's variables only, which settles such a nesting. The world size is read from the same
/// launchers as the rank (never with `--rank`: a worker started by hand inside an allocation would otherwise
/// carry the allocation's task count), and it too must agree across them.
/// An empty variable counts as unset (`env SLURM_PROCID= …` hides an outer launcher's value).
public struct LaunchEnvironment: Equatable, Sendable {
    /// One launcher's pair of variables.
    public struct Launcher: Equatable, Sendable {
        public let name: String
        public let rankVariable: String
        public let sizeVariable: String
    }

    /// The launchers whose variables a worker reads, in precedence order.
    public static let launchers: [Launcher] = [
        Launcher(name: "slurm", rankVariable: "SLURM_PROCID", sizeVariable: "SLURM_NTASKS"),
        Launcher(name: "openmpi", rankVariable: "OMPI_COMM_WORLD_RANK", sizeVariable: "OMPI_COMM_WORLD_SIZE"),
        Launcher(name: "pmi", rankVariable: "PMI_RANK", sizeVariable: "PMI_SIZE"),
        Launcher(name: "torchrun", rankVariable: "RANK", sizeVariable: "WORLD_SIZE"),
    ]

    /// The variable that names the coordinator's control endpoint when `--join` is not given.
    public static let endpointVariable = "ATTNRES_COORDINATOR"

    /// The launcher's world size and the variable it was read from, as the `hello` message carries it.
    public struct WorldSize: Codable, Equatable, Sendable {
        public var size: Int
        public var variable: String
        public init(size: Int, variable: String) { self.size = size; self.variable = variable }
    }

    public var rank: Int
    /// Where the rank came from: `--rank` or a variable (`OMPI_COMM_WORLD_RANK=3`), for messages.
    public var rankSource: String
    public var worldSize: WorldSize?
    public var endpoint: String
    /// `--join` or `ATTNRES_COORDINATOR`.
    public var endpointSource: String

    /// Resolves a worker's rank, world size and endpoint; `launcher` nil = every launcher (`--launcher auto`).
    public static func resolve(rank flagRank: Int?, join flagJoin: String?, launcher: String? = nil,
                               environment: [String: String]) throws -> LaunchEnvironment {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let candidates: [Launcher]
        if let launcher {
            guard let l = launchers.first(where: { $0.name == launcher }) else {
                throw LaunchError.unknownLauncher(launcher, known: launchers.map(\.name))
            }
            candidates = [l]
        } else {
            candidates = launchers
        }

        let endpoint: String, endpointSource: String
        if let flagJoin {
            (endpoint, endpointSource) = (flagJoin, "--join")
        } else if let e = value(endpointVariable) {
            (endpoint, endpointSource) = (e, endpointVariable)
        } else {
            throw LaunchError.noEndpoint
        }
        if let problem = Topology.endpointProblem(endpoint), !endpoint.hasPrefix("inproc://") {
            throw LaunchError.badEndpoint(source: endpointSource, value: endpoint, problem: problem)
        }

        if let flagRank {
            guard flagRank >= 0 else { throw LaunchError.badNumber(source: "--rank", value: String(flagRank), what: "rank") }
            return LaunchEnvironment(rank: flagRank, rankSource: "--rank", worldSize: nil, endpoint: endpoint, endpointSource: endpointSource)
        }

        // Every launcher whose rank variable is set, with its parsed rank and world size (if set).
        var found: [(launcher: Launcher, rank: Int, size: Int?)] = []
        for l in candidates {
            guard let text = value(l.rankVariable) else { continue }
            guard let r = Int(text), r >= 0 else { throw LaunchError.badNumber(source: l.rankVariable, value: text, what: "rank") }
            var size: Int?
            if let s = value(l.sizeVariable) {
                guard let n = Int(s), n >= 1 else { throw LaunchError.badNumber(source: l.sizeVariable, value: s, what: "world size") }
                size = n
            }
            found.append((l, r, size))
        }
        guard let first = found.first else {
            throw LaunchError.noRank(tried: candidates.map(\.rankVariable), launcher: launcher)
        }
        for other in found.dropFirst() where other.rank != first.rank {
            throw LaunchError.disagree(what: "rank", first.launcher.rankVariable, String(first.rank), other.launcher.rankVariable, String(other.rank))
        }
        let sized = found.filter { $0.size != nil }
        if let s = sized.first {
            for other in sized.dropFirst() where other.size != s.size {
                throw LaunchError.disagree(what: "world size", s.launcher.sizeVariable, String(s.size!), other.launcher.sizeVariable, String(other.size!))
            }
        }
        let worldSize = sized.first.map { WorldSize(size: $0.size!, variable: $0.launcher.sizeVariable) }
        if let worldSize, first.rank >= worldSize.size {
            throw LaunchError.rankOutsideWorld(rank: first.rank, rankVariable: first.launcher.rankVariable, worldSize)
        }
        return LaunchEnvironment(rank: first.rank, rankSource: "\(first.launcher.rankVariable)=\(first.rank)", worldSize: worldSize,
                                 endpoint: endpoint, endpointSource: endpointSource)
    }

    /// The coordinator's verdict on a launcher world size: nil when it fits a topology of `ranks` ranks, else the
    /// reason sent back in `refused` (naming the rank, the size, its variable and the topology's ranks).
    public static func mismatch(_ w: WorldSize?, rank: Int, ranks: Int) -> String? {
        guard let w, w.size != ranks else { return nil }
        return "rank \(rank) was started by a launcher with world size \(w.size) (\(w.variable)=\(w.size)), "
            + "but the topology has \(ranks) ranks (pipeline.ranks): start exactly \(ranks) workers"
    }
}

/// A worker's rank or endpoint cannot be resolved from its command line and environment.
public enum LaunchError: Error, Equatable, CustomStringConvertible {
    case noEndpoint
    case badEndpoint(source: String, value: String, problem: String)
    case noRank(tried: [String], launcher: String?)
    case badNumber(source: String, value: String, what: String)
    case disagree(what: String, String, String, String, String)
    case rankOutsideWorld(rank: Int, rankVariable: String, LaunchEnvironment.WorldSize)
    case unknownLauncher(String, known: [String])

    public var description: String {
        switch self {
        case .noEndpoint:
            return "no coordinator endpoint: pass --join ENDPOINT or set \(LaunchEnvironment.endpointVariable) (neither is set)"
        case .badEndpoint(let source, let value, let problem):
            return "the coordinator endpoint '\(value)' (from \(source)) is not usable: \(problem)"
        case .noRank(let tried, let launcher):
            return "no rank: pass --rank R, or start the worker under a launcher that sets it "
                + "(tried \(tried.joined(separator: ", "))\(launcher.map { " for --launcher \($0)" } ?? ""); none is set)"
        case .badNumber(let source, let value, let what):
            return "\(source)='\(value)' is not a \(what) (\(what == "rank" ? "an integer ≥ 0" : "an integer ≥ 1"))"
        case .disagree(let what, let a, let av, let b, let bv):
            return "the launchers' \(what)s disagree: \(a)=\(av) but \(b)=\(bv) (one launcher inside another, e.g. mpirun in an sbatch "
                + "script?); choose one with --launcher \(LaunchEnvironment.launchers.map(\.name).joined(separator: "|")), or pass --rank"
        case .rankOutsideWorld(let rank, let variable, let w):
            return "\(variable)=\(rank) is not below the launcher's world size \(w.variable)=\(w.size)"
        case .unknownLauncher(let name, let known):
            return "--launcher '\(name)': expected auto or one of \(known.joined(separator: ", "))"
        }
    }
}

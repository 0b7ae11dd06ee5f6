import Foundation
import Wire

/// The coordinator's rule for control messages, a pure value so it is tested without sockets: which peer may
/// speak for which rank, and which field values are in range (docs/protocol.md, "Who may say what").
///
/// A worker's control DEALER has the routing id `rank-R`, its heartbeat DEALER `rank-R-heartbeat`; libzmq refuses
/// a second connection with a routing id already in use, so once rank R has joined nobody else can speak as it.
/// A message claiming a rank from any other peer, or a rank out of range, is dropped (counted and logged): it is
/// not from a worker of this run. A message from the joined peer with a field out of range is a violation: that
/// worker is broken, and the run stops naming it.
struct ControlAdmission {
    enum Verdict: Equatable {
        case accept
        /// Not from a worker of this run: dropped.
        case drop(String)
        /// From the joined worker, but wrong: the run stops.
        case violation(field: String, problem: String)
    }

    /// The variant being run: what `step_done` and `report` must refer to.
    struct Running: Equatable { var variant: Int; var steps: Int; var hops: Int }

    let ranks: Int
    /// The protocol version each joined rank speaks.
    private(set) var joined: [Int: Int] = [:]
    var running: Running?
    /// Per rank: steps done in the running variant, and whether it reported.
    private(set) var stepsDone: [Int: Int] = [:]
    private(set) var reported: Set<Int> = []
    private(set) var bound: Set<Int> = []
    private(set) var ready: Set<Int> = []
    /// Ranks refused because their launcher's world size is not the topology's rank count, with the reason. The
    /// whole launch is wrong then (every task of it carries the same size), so no worker of it will ever join.
    private(set) var worldSizeRefusals: [Int: String] = [:]

    init(ranks: Int) { self.ranks = ranks }

    static func controlPeer(_ rank: Int) -> [UInt8] { Array("rank-\(rank)".utf8) }
    static func heartbeatPeer(_ rank: Int) -> [UInt8] { Array("rank-\(rank)-heartbeat".utf8) }

    /// The joined rank whose control or heartbeat socket `peer` is, if any.
    func joinedRank(of peer: [UInt8]) -> Int? {
        joined.keys.first { peer == ControlAdmission.controlPeer($0) || peer == ControlAdmission.heartbeatPeer($0) }
    }

    /// A routing id as a log line shows it: the text when printable, else hex.
    static func name(_ peer: [UInt8]) -> String {
        if !peer.isEmpty, peer.allSatisfy({ (0x21...0x7e).contains($0) }) { return "'" + String(decoding: peer, as: UTF8.self) + "'" }
        return "0x" + peer.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// A `hello` for `rank` speaking `versions` from `peer`: the version chosen, or the reason for refusing it.
    /// `worldSize`: the launcher's task count the hello carried; a launch of another size is refused first, since
    /// it explains a rank out of range too.
    mutating func join(rank r: Int, versions: [Int], worldSize: LaunchEnvironment.WorldSize? = nil,
                       from peer: [UInt8]) -> Result<Int, JoinRefusal> {
        if let reason = LaunchEnvironment.mismatch(worldSize, rank: r, ranks: ranks) {
            // Only rank r's own peer can make rank r's launch count as wrong (a stranger is merely refused).
            if (0..<ranks).contains(r), joined[r] == nil, peer == ControlAdmission.controlPeer(r) { worldSizeRefusals[r] = reason }
            return .failure(JoinRefusal(reason))
        }
        guard (0..<ranks).contains(r) else { return .failure(JoinRefusal("rank \(r) is not in 0…\(ranks - 1)")) }
        guard let version = ControlProtocol.negotiate(versions) else {
            return .failure(JoinRefusal(ControlAdmission.versionMismatch(theirs: versions)))
        }
        guard joined[r] == nil else { return .failure(JoinRefusal("rank \(r) has already joined")) }
        guard peer == ControlAdmission.controlPeer(r) else {
            return .failure(JoinRefusal("a worker joining as rank \(r) must connect with routing id 'rank-\(r)', not \(ControlAdmission.name(peer))"))
        }
        joined[r] = version
        worldSizeRefusals[r] = nil
        return .success(version)
    }

    static func versionMismatch(theirs: [Int]) -> String {
        "no common protocol version: the worker speaks \(theirs.map(String.init).joined(separator: ", ")), "
            + "this coordinator speaks \(ControlProtocol.versions.map(String.init).joined(separator: ", "))"
    }

    /// Starts checking `step_done` and `report` against a new variant.
    mutating func begin(_ r: Running) {
        running = r
        stepsDone = [:]
        reported = []
    }

    /// Every message but `hello`.
    mutating func admit(_ m: FromWorker, from peer: [UInt8]) -> Verdict {
        let r = m.rank
        guard (0..<ranks).contains(r) else { return .drop("\(m.typeName) claims rank \(r), not in 0…\(ranks - 1)") }
        let fromControl = peer == ControlAdmission.controlPeer(r)
        if case .heartbeat = m {
            // The heartbeat thread may beat before the control socket's hello has been read.
            return fromControl && joined[r] != nil || peer == ControlAdmission.heartbeatPeer(r) ? .accept
                : .drop("heartbeat claims rank \(r) from a peer that is not rank \(r)'s")
        }
        guard fromControl, joined[r] != nil else {
            return .drop("\(m.typeName) claims rank \(r), which \(joined[r] == nil ? "has not joined" : "joined from peer 'rank-\(r)'")")
        }
        switch m {
        case .bound:
            return bound.insert(r).inserted ? .accept : .violation(field: "type", problem: "a second bound message")
        case .ready:
            return ready.insert(r).inserted ? .accept : .violation(field: "type", problem: "a second ready message")
        case .stepDone(_, let variant, let step, _):
            guard let running else { return .violation(field: "type", problem: "step_done while no variant runs") }
            guard variant == running.variant else { return .violation(field: "variant", problem: "\(variant), but the variant being run is \(running.variant)") }
            let next = stepsDone[r] ?? 0
            guard step == next, step < running.steps else {
                return .violation(field: "step", problem: "\(step), but the next step of rank \(r) is \(next) of 0…\(running.steps - 1)")
            }
            stepsDone[r] = next + 1
            return .accept
        case .report(let rep):
            guard let running else { return .violation(field: "type", problem: "report while no variant runs") }
            if let (field, problem) = rep.violation(rank: r, variant: running.variant, ranks: ranks, hops: running.hops) {
                return .violation(field: field, problem: problem)
            }
            guard stepsDone[r] == running.steps else {
                return .violation(field: "type", problem: "report after \(stepsDone[r] ?? 0) of \(running.steps) steps")
            }
            return reported.insert(r).inserted ? .accept : .violation(field: "type", problem: "a second report for variant \(running.variant)")
        case .hello, .failed, .heartbeat:
            return .accept
        }
    }
}

/// Why a `hello` was refused.
struct JoinRefusal: Error, Equatable {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

import CSys
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The local worker processes a coordinator started. Teardown is data: SIGTERM, a deadline, then SIGKILL,
/// and every child is reaped, so nothing is ever orphaned.
public final class WorkerProcesses {
    public struct Child { public let rank: Int; public let pid: pid_t; public var exited: Int32? }
    public private(set) var children: [Child] = []

    public init() {}

    /// Path of the running executable (workers are the same binary).
    public static var selfExecutable: String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        return n > 0 ? String(cString: buf) : CommandLine.arguments[0]
    }

    /// Starts `attnres worker --join ENDPOINT --rank R --parent-pid PID [--keys DIR] [--fault F]…`.
    public func spawn(rank: Int, join: String, faults: [Fault], executable exe: String = WorkerProcesses.selfExecutable,
                      keys: String? = nil) throws {
        var args = [exe, "worker", "--join", join, "--rank", String(rank), "--parent-pid", String(getpid())]
        if let keys { args += ["--keys", keys] }
        for f in faults where f.rank == rank { args += ["--fault", f.description] }
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        // Only stdin/stdout/stderr are inherited (see attnres_spawn_clean).
        let rc = attnres_spawn_clean(&pid, exe, &cargs, environ)
        guard rc == 0 else {
            throw ClusterError.spawnFailed(rank: rank, why: String(cString: strerror(rc)))
        }
        children.append(Child(rank: rank, pid: pid, exited: nil))
    }

    /// Children that have exited since the last call: (rank, pid, human-readable status).
    public func reapExited() -> [(rank: Int, pid: pid_t, status: String)] {
        var out: [(Int, pid_t, String)] = []
        for i in children.indices where children[i].exited == nil {
            var status: Int32 = 0
            if waitpid(children[i].pid, &status, WNOHANG) == children[i].pid {
                children[i].exited = status
                out.append((children[i].rank, children[i].pid, WorkerProcesses.describe(status)))
            }
        }
        return out
    }

    static func describe(_ status: Int32) -> String {
        let sig = status & 0x7f
        if sig == 0 { return "exited with code \((status >> 8) & 0xff)" }
        let name: String
        switch sig {
        case SIGKILL: name = "SIGKILL"
        case SIGTERM: name = "SIGTERM"
        case SIGSEGV: name = "SIGSEGV"
        case SIGABRT: name = "SIGABRT"
        case SIGILL: name = "SIGILL"
        case SIGTRAP: name = "SIGTRAP"
        default: name = "signal \(sig)"
        }
        return "killed by \(name)"
    }

    public var allExited: Bool { children.allSatisfy { $0.exited != nil } }

    /// Waits up to `graceSeconds` for the children to exit by themselves, then SIGTERM, then SIGKILL.
    public func stopAll(graceSeconds: Double = 1.0) {
        let deadline = monotonicSeconds() + graceSeconds
        while !allExited && monotonicSeconds() < deadline { _ = reapExited(); if !allExited { usleep(5_000) } }
        for c in children where c.exited == nil { kill(c.pid, SIGTERM); kill(c.pid, SIGCONT) }
        let termDeadline = monotonicSeconds() + 1.0
        while !allExited && monotonicSeconds() < termDeadline { _ = reapExited(); if !allExited { usleep(5_000) } }
        for c in children where c.exited == nil { kill(c.pid, SIGKILL) }
        for i in children.indices where children[i].exited == nil {
            var status: Int32 = 0
            waitpid(children[i].pid, &status, 0)
            children[i].exited = status
        }
    }

    deinit { stopAll(graceSeconds: 0) }
}

/// Failures of a cluster run, each naming the rank and what happened.
public enum ClusterError: Error, CustomStringConvertible {
    case spawnFailed(rank: Int, why: String)
    case workerDied(rank: Int, pid: Int32, status: String, phase: String)
    case workerSilent(rank: Int, seconds: Double, phase: String)
    case neverJoined(ranks: [Int], seconds: Double)
    case workerFailed(rank: Int, message: String)
    case controlEndpoint(String, String)
    case measuredDiffers(String)
    case interrupted(Int32)
    case phaseTimedOut(phase: String, seconds: Double, ranks: [Int])
    /// A joined worker sent a control message with a field out of range (its peer, rank, field and what is wrong).
    case protocolViolation(peer: String, rank: Int, field: String, problem: String)
    /// A worker asked to join and was refused (another protocol version, say); it never joined.
    case joinRefused(rank: Int, peer: String, reason: String)
    /// A worker alive (heartbeating) but with no step done for `--progress-timeout`.
    case noProgress(rank: Int, seconds: Double, phase: String, stepsDone: Int)
    /// A variant the running session cannot carry (the coordinator's own input, not a peer's).
    case incompatibleVariant(String)

    public var description: String {
        switch self {
        case .spawnFailed(let r, let why): return "cannot start worker rank \(r): \(why)"
        case .workerDied(let r, let pid, let status, let phase): return "worker rank \(r) (pid \(pid)) \(status) during \(phase); stopped the other workers"
        case .workerSilent(let r, let s, let phase): return "worker rank \(r) silent for \(String(format: "%.1f", s)) s during \(phase) (frozen or unreachable); stopped every worker"
        case .neverJoined(let ranks, let s): return "worker rank\(ranks.count > 1 ? "s" : "") \(ranks.map(String.init).joined(separator: ", ")) never joined within \(String(format: "%.1f", s)) s; stopped every worker"
        case .workerFailed(let r, let m): return "worker rank \(r) failed: \(m)"
        case .controlEndpoint(let ep, let why): return "cannot bind the coordinator endpoint \(ep): \(why)"
        case .measuredDiffers(let s): return "measured traffic differs from the analytical model: \(s)"
        case .interrupted(let sig): return "interrupted by signal \(sig); stopped every worker"
        case .phaseTimedOut(let phase, let s, let ranks):
            return "\(phase) did not finish within \(String(format: "%.0f", s)) s; still waiting for rank\(ranks.count == 1 ? "" : "s") "
                + "\(ranks.map(String.init).joined(separator: ", ")), which are alive; stopped every worker"
        case .protocolViolation(let peer, let r, let field, let problem):
            return "worker rank \(r) (peer \(peer)) sent a control message with \(field) out of range: \(problem); stopped every worker"
        case .incompatibleVariant(let why): return "cannot run this variant on the session's workers: \(why)"
        case .joinRefused(let r, let peer, let reason): return "worker rank \(r) (peer \(peer)) was refused: \(reason); stopped every worker"
        case .noProgress(let r, let s, let phase, let done):
            return "worker rank \(r) is alive but finished no step for \(String(format: "%.0f", s)) s during \(phase) "
                + "(\(done) step\(done == 1 ? "" : "s") done; --progress-timeout); stopped every worker"
        }
    }
}

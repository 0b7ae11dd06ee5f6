import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A run directory could not be created.
public struct RunDirectoryError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "cannot create the run directory \(path): \(problem)" }
}

/// The per-run directory under the temp folder that holds a coordinator's ipc sockets (`attnres-XXXXXX`).
///
/// A coordinator removes it on every exit path it controls; one that is SIGKILLed (or crashes) cannot, so the
/// directory records its owner in `owner.pid` ("PID STARTTIME", the start time from /proc so that a recycled
/// pid is not mistaken for the owner), and every new run first sweeps the directories whose owner is gone.
/// A directory without an owner file is never swept: it may belong to a run that is being created right now.
public enum RunDirectory {
    public static let prefix = "attnres-"
    public static let ownerFile = "owner.pid"

    /// The temp folder: $TMPDIR when set, else /tmp (ipc paths must stay short: sun_path holds 108 bytes).
    public static var temporaryRoot: String {
        let env = ProcessInfo.processInfo.environment["TMPDIR"] ?? ""
        let root = env.isEmpty ? "/tmp" : env
        return root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
    }

    /// Sweeps stale run directories of `root`, then creates a fresh one owned by this process; returns its path.
    public static func create(root: String = temporaryRoot) throws -> String {
        sweepStale(root: root)
        var template = Array("\(root)/\(prefix)XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw RunDirectoryError(path: "\(root)/\(prefix)XXXXXX", problem: String(cString: strerror(errno)))
        }
        let path = String(cString: made)
        guard let me = owner(of: getpid()) else {
            try? FileManager.default.removeItem(atPath: path)
            throw RunDirectoryError(path: path, problem: "cannot read this process's start time from /proc/self/stat")
        }
        do { try AtomicFile.write(Array("\(me.pid) \(me.started)\n".utf8), to: "\(path)/\(ownerFile)") } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw RunDirectoryError(path: path, problem: "cannot write \(ownerFile): \(error.localizedDescription)")
        }
        return path
    }

    /// A process's identity: its pid and its start time in clock ticks since boot.
    struct Owner: Equatable { let pid: pid_t; let started: UInt64 }

    /// The identity of live process `pid`, nil when there is none.
    static func owner(of pid: pid_t) -> Owner? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // After the parenthesised command name: state (field 3) … starttime (field 22).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z", let started = UInt64(fields[19]) else { return nil }
        return Owner(pid: pid, started: started)
    }

    /// The recorded owner of the run directory at `path`, nil when it has no readable owner file.
    static func recordedOwner(_ path: String) -> Owner? {
        guard let text = try? String(contentsOfFile: "\(path)/\(ownerFile)", encoding: .utf8) else { return nil }
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard parts.count == 2, let pid = pid_t(parts[0]), pid > 0, let started = UInt64(parts[1]) else { return nil }
        return Owner(pid: pid, started: started)
    }

    /// Removes every `attnres-XXXXXX` directory of `root` whose recorded owner is not running (dead, or its pid
    /// now belongs to a process started at another time); keeps live runs' and unowned ones. Returns the paths removed.
    @discardableResult
    public static func sweepStale(root: String = temporaryRoot) -> [String] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return [] }
        var removed: [String] = []
        for name in names where removeIfOrphaned("\(root)/\(name)", root: root) { removed.append("\(root)/\(name)") }
        return removed
    }

    /// Removes the directory at `path` when it is a run directory (`attnres-XXXXXX`) directly under `root` whose
    /// recorded owner is not running; true when it did. A worker whose coordinator was SIGKILLed calls it on its way
    /// out, so the coordinator's directory (its control socket, every rank's data socket) is gone with the last
    /// worker instead of waiting for the next run's sweep. A live owner's directory, an unowned one, or any other
    /// path (one a coordinator named elsewhere, say) is kept.
    @discardableResult
    public static func removeIfOrphaned(_ path: String, root: String = temporaryRoot) -> Bool {
        let name = (path as NSString).lastPathComponent
        guard (path as NSString).deletingLastPathComponent == root, name.hasPrefix(prefix), name.count == prefix.count + 6,
              let recorded = recordedOwner(path), owner(of: recorded.pid) != recorded else { return false }
        return (try? FileManager.default.removeItem(atPath: path)) != nil
    }
}

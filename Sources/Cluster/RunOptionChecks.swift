import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A command-line value of a run that is wrong before anything starts, naming the flag and the value.
public struct RunOptionError: Error, CustomStringConvertible, Equatable {
    public let flag: String
    public let value: String
    public let problem: String

    public init(flag: String, value: String, problem: String) { self.flag = flag; self.value = value; self.problem = problem }

    public var description: String { "\(flag) \(value): \(problem)" }
}

/// Checks of a run's options that must hold before any process starts, so a run never fails (or hangs) after
/// minutes of work for a reason visible on its command line.
public enum RunOptionChecks {
    /// The longest wait a timeout may ask for. Anything longer is a typo (or a unit confusion), and a NaN or
    /// infinite timeout would make every deadline comparison false: a wait that never ends.
    public static let longestTimeout: Double = 86_400

    /// A timeout in seconds must be finite, positive and at most a day.
    public static func timeout(_ seconds: Double, flag: String) throws {
        func fail(_ problem: String) -> RunOptionError { RunOptionError(flag: flag, value: "\(seconds)", problem: problem) }
        guard !seconds.isNaN else { throw fail("a timeout must be a number of seconds, not NaN") }
        guard seconds.isFinite else { throw fail("a timeout must be finite (at most \(Int(longestTimeout)) s, one day)") }
        guard seconds > 0 else { throw fail("a timeout must be more than 0 s") }
        guard seconds <= longestTimeout else { throw fail("more than one day (\(Int(longestTimeout)) s); give the timeout in seconds") }
    }

    /// What an output path is: a file the run writes, or a directory it fills.
    public enum OutputKind: Sendable { case file, directory }

    /// An output path must be writable before the run starts, proven by writing: a file path that exists is opened
    /// for writing (not truncated); one that does not is created and removed again. A directory path that exists
    /// gets a probe file written and removed in it; one that does not is created (its parent must exist), probed
    /// and removed again. So /proc, /sys, read-only mounts and full permissions fail here, not after the run.
    public static func output(_ path: String, flag: String, kind: OutputKind) throws {
        func fail(_ problem: String) -> RunOptionError { RunOptionError(flag: flag, value: path, problem: problem) }
        func reason() -> String { String(cString: strerror(errno)) }
        guard !path.isEmpty else { throw fail("an empty path") }
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if exists {
            switch kind {
            case .file:
                guard !isDirectory.boolValue else { throw fail("is a directory; give a file path") }
                let fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK)
                guard fd >= 0 else { throw fail("the file exists and cannot be written (\(reason()))") }
                close(fd)
            case .directory:
                guard isDirectory.boolValue else { throw fail("is a file, not a directory") }
                guard access(path, W_OK | X_OK) == 0 else { throw fail("the directory is not writable (\(reason()))") }
                try probe(directory: path, fail)
            }
            return
        }
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var parentIsDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: parent, isDirectory: &parentIsDirectory) else {
            throw fail("its directory \(parent) does not exist")
        }
        guard parentIsDirectory.boolValue else { throw fail("\(parent) is not a directory") }
        guard access(parent, W_OK | X_OK) == 0 else {
            throw fail("its directory \(parent) is not writable (\(reason()))")
        }
        switch kind {
        case .file:
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw fail("cannot be created (\(reason()))") }
            close(fd)
            unlink(path)
        case .directory:
            guard mkdir(path, 0o755) == 0 else { throw fail("cannot be created (\(reason()))") }
            defer { rmdir(path) }
            try probe(directory: path, fail)
        }
    }

    /// Writes and removes a probe file in `directory`.
    static func probe(directory: String, _ fail: (String) -> RunOptionError) throws {
        let probe = "\(directory)/.attnres-probe-\(getpid())"
        let fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("cannot write a file in the directory (\(String(cString: strerror(errno))))") }
        let written = write(fd, "x", 1)
        let problem = written == 1 ? nil : String(cString: strerror(errno))
        close(fd)
        unlink(probe)
        if let problem { throw fail("cannot write a file in the directory (\(problem))") }
    }

    /// Runs `body`, which writes the result at `path` for `flag`; any failure becomes an `OutputWriteError` naming
    /// the flag, the path and the operating system's reason, instead of a raw Foundation error dump.
    public static func writing<T>(_ path: String, flag: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as OutputWriteError { throw e } catch {
            throw OutputWriteError(flag: flag, path: path, reason: OutputWriteError.reason(error, path: path))
        }
    }
}

/// A result file could not be written at the end of a run: which flag, which path, why.
public struct OutputWriteError: Error, CustomStringConvertible, Equatable {
    public let flag: String
    public let path: String
    public let reason: String

    public var description: String { "\(flag) \(path): cannot write the result: \(reason)" }

    /// The operating system's words for why `path` could not be written. Foundation on Linux often reports only
    /// "the file doesn't exist" or "error 512"; the POSIX error under it when there is one, else the errno of
    /// opening `path` for writing again (a file that this creates is removed), else Foundation's own words.
    static func reason(_ error: Error, path: String) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let posix = error as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
        let existed = access(path, F_OK) == 0
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0o644)
        if fd < 0 { return String(cString: strerror(errno)) }
        close(fd)
        if !existed { unlink(path) }
        if ns.domain == NSCocoaErrorDomain {
            switch ns.code {
            case NSFileWriteNoPermissionError: return "permission denied"
            case NSFileWriteOutOfSpaceError: return "no space left on the device"
            case NSFileWriteVolumeReadOnlyError: return "read-only file system"
            default: return ns.localizedDescription
            }
        }
        return "\(error)"
    }
}

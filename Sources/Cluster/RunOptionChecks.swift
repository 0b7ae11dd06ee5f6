import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A command-line value of a run that is wrong before anything starts, naming the flag and the value.
public struct RunOptionError: Error, CustomStringConvertible, Equatable {
    public let flag: String
    public let value: String
    public let problem: String

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

    /// An output path must be writable before the run starts: its parent directory exists and is writable; a file
    /// path is not a directory; a directory path is a writable directory or does not exist yet (it is created).
    public static func output(_ path: String, flag: String, kind: OutputKind) throws {
        func fail(_ problem: String) -> RunOptionError { RunOptionError(flag: flag, value: path, problem: problem) }
        guard !path.isEmpty else { throw fail("an empty path") }
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        if exists {
            switch kind {
            case .file:
                guard !isDirectory.boolValue else { throw fail("is a directory; give a file path") }
                guard access(path, W_OK) == 0 else { throw fail("the file exists and is not writable (\(String(cString: strerror(errno))))") }
            case .directory:
                guard isDirectory.boolValue else { throw fail("is a file, not a directory") }
                guard access(path, W_OK | X_OK) == 0 else { throw fail("the directory is not writable (\(String(cString: strerror(errno))))") }
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
            throw fail("its directory \(parent) is not writable (\(String(cString: strerror(errno))))")
        }
    }
}

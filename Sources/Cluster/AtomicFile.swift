import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file write failed; nothing was replaced.
public struct AtomicFileError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "cannot write \(path): \(problem)" }
}

/// Whole-file writes that a crash cannot leave half done: the bytes go to a temp file in the same directory, are
/// fsynced, renamed over the target (atomic within a file system), and the directory is fsynced so the rename
/// itself survives a power cut. A reader sees the old file or the new one, never a mix.
public enum AtomicFile {
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let name = URL(fileURLWithPath: path).lastPathComponent
        let temp = "\(directory)/.\(name).tmp-\(getpid())"
        func fail(_ what: String, _ code: Int32 = errno) -> AtomicFileError {
            let why = String(cString: strerror(code))
            unlink(temp)
            return AtomicFileError(path: path, problem: "\(what): \(why)")
        }
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("cannot create \(temp)") }
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                close(fd)
                throw fail("write failed", e)
            }
            written += n
        }
        guard fsync(fd) == 0 else { let e = errno; close(fd); throw fail("fsync failed", e) }
        guard close(fd) == 0 else { throw fail("close failed") }
        guard rename(temp, path) == 0 else { throw fail("rename over it failed") }
        let dirFd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFd >= 0 { fsync(dirFd); close(dirFd) }
    }
}

import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An input file that cannot be used, saying what is wrong with it in the reader's terms (missing, a directory,
/// unreadable, not UTF-8) instead of Foundation's generic wording.
public struct InputFileError: Error, CustomStringConvertible, Equatable {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}

/// Reading topology files, checkpoint manifests and rank files: one place that turns every way a read can fail
/// into an `InputFileError` naming the file.
public enum InputFile {
    /// Largest input any command reads by default (a topology, a manifest, a CSV, a corpus).
    public static let defaultLimit = 1 << 30

    /// The bytes of the regular file at `path`, at most `limit` of them: a FIFO, a device (`/dev/zero`), a socket or
    /// a file larger than `limit` is an error before anything is read, so no input can block or exhaust memory.
    public static func bytes(_ path: String, limit: Int = defaultLimit) throws -> [UInt8] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            throw InputFileError(path: path, problem: e == ENOENT ? "no such file" : "cannot read: \(String(cString: strerror(e)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw InputFileError(path: path, problem: "is a directory, not a file") }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw InputFileError(path: path, problem: "is not a regular file (a FIFO, device or socket cannot be read as input)")
        }
        guard Int(st.st_size) <= limit else {
            throw InputFileError(path: path, problem: "is \(st.st_size) bytes, more than the \(limit) this input may have")
        }
        // O_NONBLOCK: had the path been swapped for a FIFO since the stat, open must not wait for a writer.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else {
            let e = errno
            throw InputFileError(path: path, problem: e == EACCES ? "not readable (permission denied)" : "cannot open: \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        var opened = stat()
        guard fstat(fd, &opened) == 0, (opened.st_mode & S_IFMT) == S_IFREG else {
            throw InputFileError(path: path, problem: "is not a regular file (a FIFO, device or socket cannot be read as input)")
        }
        var out: [UInt8] = []
        out.reserveCapacity(max(0, Int(opened.st_size)))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw InputFileError(path: path, problem: "read failed: \(String(cString: strerror(errno)))")
            }
            out.append(contentsOf: chunk[0..<n])
            guard out.count <= limit else {
                throw InputFileError(path: path, problem: "grew past the \(limit) bytes this input may have while being read")
            }
        }
        return out
    }

    /// The text of the UTF-8 file at `path`.
    public static func text(_ path: String, limit: Int = defaultLimit) throws -> String {
        let b = try bytes(path, limit: limit)
        guard let s = String(validating: b, as: UTF8.self) else {
            var offset = 0
            var decoder = UTF8()
            var it = b.makeIterator()
            loop: while true {
                switch decoder.decode(&it) {
                case .scalarValue(let u): offset += String(u).utf8.count
                case .emptyInput, .error: break loop
                }
            }
            throw InputFileError(path: path, problem: "is not UTF-8 text (invalid byte at offset \(offset))")
        }
        return s
    }
}

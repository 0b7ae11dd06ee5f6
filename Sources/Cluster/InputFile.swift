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
    /// The bytes of the regular file at `path`.
    public static func bytes(_ path: String) throws -> [UInt8] {
        var st = stat()
        guard stat(path, &st) == 0 else {
            let e = errno
            throw InputFileError(path: path, problem: e == ENOENT ? "no such file" : "cannot read: \(String(cString: strerror(e)))")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR { throw InputFileError(path: path, problem: "is a directory, not a file") }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            throw InputFileError(path: path, problem: e == EACCES ? "not readable (permission denied)" : "cannot open: \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        var out: [UInt8] = []
        out.reserveCapacity(max(0, Int(st.st_size)))
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                throw InputFileError(path: path, problem: "read failed: \(String(cString: strerror(errno)))")
            }
            out.append(contentsOf: chunk[0..<n])
        }
        return out
    }

    /// The text of the UTF-8 file at `path`.
    public static func text(_ path: String) throws -> String {
        let b = try bytes(path)
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

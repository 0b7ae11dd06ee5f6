import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Wire

/// A key directory problem, naming the file and what is wrong with it.
public enum CurveKeyError: Error, CustomStringConvertible, Equatable {
    case missing(file: String, role: String)
    case malformed(file: String, problem: String)
    /// The public key file does not belong to the secret key file next to it.
    case mismatched(secret: String, public: String)
    /// A secret key that others may read is no secret: refused, as ssh refuses such a private key.
    case exposed(file: String, mode: UInt32)
    case exists(files: [String])
    case cannotWrite(path: String, why: String)
    case badRanks(Int)

    public var description: String {
        switch self {
        case .missing(let f, let role): return "\(f): no such file (\(role); make the key directory with `attnres keys generate DIR --ranks P`)"
        case .malformed(let f, let problem): return "\(f): \(problem)"
        case .mismatched(let s, let p): return "\(p) is not the public key of \(s): the pair does not belong together (regenerate it, or copy both files of one pair)"
        case .exposed(let f, let mode): return "\(f): a secret key readable by others (mode \(String(mode, radix: 8))): chmod 600 \(f)"
        case .exists(let files):
            return "refusing to overwrite existing keys (\(files.prefix(3).joined(separator: ", "))\(files.count > 3 ? ", …" : "")): pass --force to replace them"
        case .cannotWrite(let p, let why): return "cannot write \(p): \(why)"
        case .badRanks(let n): return "--ranks \(n): a pipeline has 2…512 ranks"
        }
    }
}

/// The coordinator's view of a key directory: its own pair and every rank's public key (index = rank).
public struct CoordinatorKeys: Sendable, Equatable {
    public let pair: CurveKeyPair
    public let rankPublicKeys: [String]
}

/// A worker's view: its own pair and the coordinator's public key. The public keys of the ranks it exchanges
/// data with come from the coordinator in `setup`, over the already authenticated control link.
public struct WorkerKeys: Sendable, Equatable {
    public let rank: Int
    public let pair: CurveKeyPair
    public let coordinatorPublicKey: String
    public let directory: String
}

/// A CURVE key directory (docs/protocol.md, "Authentication"): one file per key, each holding the 40-character
/// Z85 key and a newline, the secret files mode 0600:
///
///     coordinator.pub  coordinator.secret  rank-0.pub  rank-0.secret  …  rank-(P−1).pub  rank-(P−1).secret
///
/// A host needs only the files of the processes it runs: a worker host `coordinator.pub` and its ranks' pairs, the
/// coordinator host `coordinator.pub`, `coordinator.secret` and every `rank-R.pub`.
public enum CurveKeys {
    public static func publicFile(_ dir: String, _ name: String) -> String { dir + "/" + name + ".pub" }
    public static func secretFile(_ dir: String, _ name: String) -> String { dir + "/" + name + ".secret" }
    public static func rankName(_ r: Int) -> String { "rank-\(r)" }
    public static let coordinatorName = "coordinator"

    /// Writes a fresh pair for the coordinator and for each of `ranks` ranks into `directory` (created mode 0700
    /// when absent); returns the files written. Existing key files are replaced only with `force`.
    @discardableResult
    public static func generate(directory: String, ranks: Int, force: Bool) throws -> [String] {
        guard (2...512).contains(ranks) else { throw CurveKeyError.badRanks(ranks) }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) {
            guard isDir.boolValue else { throw CurveKeyError.cannotWrite(path: directory, why: "exists and is not a directory") }
        } else {
            do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) } catch {
                throw CurveKeyError.cannotWrite(path: directory, why: "\(error.localizedDescription)")
            }
        }
        let names = [coordinatorName] + (0..<ranks).map(rankName)
        let files = names.flatMap { [publicFile(directory, $0), secretFile(directory, $0)] }
        let existing = files.filter { FileManager.default.fileExists(atPath: $0) }
        guard existing.isEmpty || force else { throw CurveKeyError.exists(files: existing) }
        for name in names {
            let pair = try CurveKeyPair.generate()
            try write(secretFile(directory, name), pair.secretKey, mode: 0o600)
            try write(publicFile(directory, name), pair.publicKey, mode: 0o644)
        }
        return files
    }

    /// The coordinator's pair and the public keys of ranks 0 … `ranks`−1.
    public static func coordinator(directory: String, ranks: Int) throws -> CoordinatorKeys {
        let pair = try readPair(directory, coordinatorName, role: "the coordinator's")
        let publics = try (0..<ranks).map { try readKey(publicFile(directory, rankName($0)), role: "rank \($0)'s public key", secret: false) }
        return CoordinatorKeys(pair: pair, rankPublicKeys: publics)
    }

    /// Rank `rank`'s pair and the coordinator's public key: nothing else is read.
    public static func worker(directory: String, rank: Int) throws -> WorkerKeys {
        let pair = try readPair(directory, rankName(rank), role: "rank \(rank)'s")
        let server = try readKey(publicFile(directory, coordinatorName), role: "the coordinator's public key", secret: false)
        return WorkerKeys(rank: rank, pair: pair, coordinatorPublicKey: server, directory: directory)
    }

    /// A secret and public key file that belong together.
    static func readPair(_ dir: String, _ name: String, role: String) throws -> CurveKeyPair {
        let secretPath = secretFile(dir, name), publicPath = publicFile(dir, name)
        let secret = try readKey(secretPath, role: "\(role) secret key", secret: true)
        let pub = try readKey(publicPath, role: "\(role) public key", secret: false)
        guard CurveKeyPair.publicKey(of: secret) == pub else { throw CurveKeyError.mismatched(secret: secretPath, public: publicPath) }
        return CurveKeyPair(publicKey: pub, secretKey: secret)
    }

    /// One key file: the Z85 key, surrounding whitespace ignored.
    static func readKey(_ path: String, role: String, secret: Bool) throws -> String {
        var st = stat()
        guard stat(path, &st) == 0 else {
            if errno == ENOENT { throw CurveKeyError.missing(file: path, role: role) }
            throw CurveKeyError.malformed(file: path, problem: "cannot read: \(String(cString: strerror(errno)))")
        }
        // Only a regular file's mode says who can read a key: a directory or a device (a symlink to /dev/zero) is
        // refused by InputFile as what it is, not as an exposed secret.
        if secret, (st.st_mode & S_IFMT) == S_IFREG, st.st_mode & 0o077 != 0 { throw CurveKeyError.exposed(file: path, mode: UInt32(st.st_mode & 0o777)) }
        let bytes: [UInt8]
        do { bytes = try InputFile.bytes(path, limit: 4096) } catch let e as InputFileError {
            throw CurveKeyError.malformed(file: path, problem: e.problem)
        }
        let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard CurveKeyPair.decode(text) != nil else {
            throw CurveKeyError.malformed(file: path, problem: "\(role) must be one line of 40 Z85 characters (as `attnres keys generate` writes), got \(text.utf8.count) characters")
        }
        return text
    }

    static func write(_ path: String, _ key: String, mode: mode_t) throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw CurveKeyError.cannotWrite(path: path, why: String(cString: strerror(errno))) }
        defer { close(fd) }
        // The mode given to open is masked by the umask; a secret must end up 0600 whatever the umask.
        fchmod(fd, mode)
        let line = Array((key + "\n").utf8)
        guard line.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw CurveKeyError.cannotWrite(path: path, why: String(cString: strerror(errno)))
        }
    }
}

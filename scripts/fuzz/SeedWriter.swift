// Shared by every fuzz binary: `BINARY --write-seeds=DIR` writes the target's seed inputs, produced by the
// encoders of this very build, into DIR and exits. So the seeds always speak the current wire version and
// message shapes; nothing hand-made needs updating when the format changes. libFuzzer leaves flags that start
// with `--` to the target, and calls `LLVMFuzzerInitialize` before it reads any corpus.
#if canImport(Glibc)
import Glibc
#endif

enum SeedWriter {
    static let flag = "--write-seeds="

    /// When the command line asks for it, writes `seeds()` (name, bytes) into the directory and exits.
    static func writeIfAsked(_ seeds: () throws -> [(name: String, bytes: [UInt8])]) {
        guard let arg = CommandLine.arguments.first(where: { $0.hasPrefix(flag) }) else { return }
        let dir = String(arg.dropFirst(flag.count))
        do {
            let all = try seeds()
            for (name, bytes) in all {
                let path = dir + "/" + name
                guard let f = fopen(path, "wb") else { fail("cannot create \(path): \(String(cString: strerror(errno)))") }
                let written = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
                guard written == bytes.count, fclose(f) == 0 else { fail("cannot write \(path)") }
            }
            print("wrote \(all.count) seed inputs to \(dir)")
            exit(0)
        } catch { fail("cannot encode the seed inputs: \(error)") }
    }

    static func fail(_ message: String) -> Never {
        fputs("seed writer: \(message)\n", stderr)
        exit(2)
    }
}

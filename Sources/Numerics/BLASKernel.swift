#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// The deliberate choice of OpenBLAS kernel (DESIGN §6).
///
/// Debian's OpenBLAS is built with DYNAMIC_ARCH and picks a kernel family from the CPU at *library load*; it reads
/// `OPENBLAS_CORETYPE` only then, so a process that wants another kernel must set the variable and re-execute itself
/// before its first BLAS call. We pin the family from the CPU flags — SkylakeX (AVX-512) when `avx512f` is present,
/// else Haswell (AVX2/FMA) when `avx2` and `fma` are, else OpenBLAS's own detection — because (1) autodetection
/// picks a slow SSE3 kernel on some hosts (DESIGN §6) and (2) different kernels sum in different orders, so every
/// process of a pipeline run must use the same one to agree bit for bit. A user-set `OPENBLAS_CORETYPE` wins.
/// `attnres bench model` measures every candidate and checks its results against the naive product.
public enum BLASKernel {
    /// The environment variable OpenBLAS reads at load time.
    public static let variable = "OPENBLAS_CORETYPE"

    /// The kernel family we choose for CPU flags (a set of /proc/cpuinfo flag words); nil = leave to OpenBLAS.
    public static func preferred(cpuFlags: Set<String>) -> String? {
        if cpuFlags.contains("avx512f") && cpuFlags.contains("avx512vl") { return "SkylakeX" }
        if cpuFlags.contains("avx2") && cpuFlags.contains("fma") { return "Haswell" }
        return nil
    }

    /// The flags line of /proc/cpuinfo (empty where that file does not exist).
    public static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(line.split(separator: ":").last!.split(separator: " ").map(String.init))
    }

    /// The CPU model name (for benchmark headers).
    public static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }) else { return "unknown" }
        return line.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)
    }

    /// If `OPENBLAS_CORETYPE` is unset and we prefer a kernel, sets it and re-executes this program with the same
    /// arguments (execv of /proc/self/exe). Returns normally when no re-exec is needed or it is impossible.
    public static func reexecWithPreferredKernelIfNeeded() {
        guard getenv(variable) == nil, let kernel = preferred(cpuFlags: cpuFlags()) else { return }
        setenv(variable, kernel, 1)
        let args = CommandLine.arguments
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
        cargs.append(nil)
        execv("/proc/self/exe", &cargs)
        // execv only returns on failure: continue with the kernel OpenBLAS autodetected.
        unsetenv(variable)
    }
}

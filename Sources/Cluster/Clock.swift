#if canImport(Glibc)
import Glibc
#endif

/// Monotonic seconds, for deadlines and spans (never for test synchronisation).
@inline(__always) public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Writes one line to standard error.
public func printError(_ s: String) {
    var line = s
    if !line.hasSuffix("\n") { line += "\n" }
    fputs(line, stderr)
}

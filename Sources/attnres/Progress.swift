import Cluster
import Foundation

/// Progress on a TTY only: one line on standard error, rewritten in place, with a bar, the work item (variant,
/// point, step), the bytes moved, their rate and the time left. When standard error is not a terminal (a log, a
/// CI step, a pipe) it writes nothing at all, so captured output stays the report alone.
struct Progress {
    let enabled = isatty(STDERR_FILENO) != 0
    let started = Date()

    /// `fraction`: share of the work done (0…1; nil = unknown, no bar or ETA); `bytes`: payload moved so far.
    func update(_ text: String, fraction: Double? = nil, bytes: Int? = nil) {
        guard enabled else { return }
        FileHandle.standardError.write(("\r\u{1B}[K" + Progress.line(text, fraction: fraction, bytes: bytes,
                                                                   elapsed: Date().timeIntervalSince(started))).data(using: .utf8)!)
    }

    func finish() { if enabled { FileHandle.standardError.write("\r\u{1B}[K".data(using: .utf8)!) } }

    /// `[#####-----]  50% text, 1.00 MiB moved, 2.00 MiB/s, ETA 3 s (elapsed 3.0 s)`; the ETA extrapolates the
    /// elapsed time by the fraction done.
    static func line(_ text: String, fraction: Double?, bytes: Int?, elapsed: Double) -> String {
        var out = ""
        if let fraction {
            let f = min(1, max(0, fraction)), width = 20, filled = Int((f * Double(width)).rounded(.down))
            out += "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "] "
            out += String(format: "%3.0f%% ", 100 * f)
        }
        out += text
        if let bytes {
            out += ", \(Report.human(bytes)) moved"
            if elapsed > 0 { out += ", \(Report.human(Int(Double(bytes) / elapsed)))/s" }
        }
        if let fraction, fraction > 0, fraction < 1 {
            out += String(format: ", ETA %.0f s", elapsed * (1 - fraction) / fraction)
        }
        return out + String(format: " (elapsed %.1f s)", elapsed)
    }
}

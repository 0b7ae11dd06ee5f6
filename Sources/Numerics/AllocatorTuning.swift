import COpenBLAS  // its shim also exposes glibc's <malloc.h>

/// glibc malloc tuning for the training loop.
///
/// Activations here are 100 KiB – a few MiB, right around glibc's default mmap threshold (128 KiB, adaptive), so
/// every freed tensor went back to the kernel and the next step page-faulted fresh zeroed pages (≈ 8 % of a step in
/// `perf`). Raising the mmap and trim thresholds to 256 MiB keeps those buffers in the heap for reuse.
public enum AllocatorTuning {
    /// Applies the thresholds once per process (no-op off glibc).
    public static func apply() { _ = applied }
    private static let applied: Bool = {
        #if os(Linux)
        _ = mallopt(M_MMAP_THRESHOLD, 256 << 20)
        _ = mallopt(M_TRIM_THRESHOLD, 512 << 20)
        #endif
        return true
    }()
}

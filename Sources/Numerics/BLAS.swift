import COpenBLAS

/// The one place that talks to OpenBLAS.
///
/// Determinism: OpenBLAS is pinned to one thread (`openblas_set_num_threads(1)`), so a given kernel always sums in
/// the same order and the same inputs give bitwise-identical outputs run after run. Kernel choice: OpenBLAS picks
/// its kernel from `OPENBLAS_CORETYPE` when the library loads (before any Swift code runs); see `BLASKernel`.
public enum BLAS {
    /// Pins OpenBLAS to a single thread. Idempotent and cheap; every entry point of this module calls it once.
    public static func configureDeterministic() { _ = pinned }
    private static let pinned: Bool = { openblas_set_num_threads(1); return true }()

    /// Lets OpenBLAS use `count` threads from now on (after `configureDeterministic`). OpenBLAS's threaded sgemm
    /// splits the output into M×N tiles and never splits the inner dimension, so each element is still summed in the
    /// same order; `attnres train --blas-threads` exists to check that claim (compare the losses bit for bit).
    public static func setThreads(_ count: Int) {
        configureDeterministic()
        openblas_set_num_threads(Int32(count))
    }

    /// The kernel family OpenBLAS selected at load time (e.g. "Prescott", "Haswell", "SkylakeX").
    public static var coreName: String {
        guard let p = openblas_get_corename() else { return "unknown" }
        return String(cString: p)
    }

    /// `C = alpha · op(A) · op(B) + beta · C` on row-major buffers (a thin, typed `cblas_sgemm`).
    /// - Shapes: op(A) is [m, k], op(B) is [k, n], C is [m, n]; `lda`, `ldb`, `ldc` are row strides.
    @inlinable
    public static func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                             a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                             beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

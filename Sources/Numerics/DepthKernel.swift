import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which implementation of the depth-attention kernels runs: the Swift SIMD loops of `DepthAttention`, built for
/// baseline x86-64 like the rest of the package (4-wide SSE2, no FMA), the AVX2 + FMA kernels of CKernels (8-wide,
/// fused multiply-add) or its AVX-512F kernels (16-wide, masked tails), which only some CPUs have (DESIGN §6: CI's
/// CPU differs from the development VM's). The widest one the CPU has is preferred.
///
/// The choice is made once per process, from the CPU, so every call of a run uses the same kernel and results stay
/// deterministic; all processes of a pipeline on one machine choose alike, which keeps pipeline == single process
/// bitwise. The kernels round differently (each is tested against the plain reference loops with the tolerance
/// of docs/model.md), so a cluster whose hosts have different CPUs pins one with `ATTNRES_DEPTH_KERNEL=baseline`
/// (or `avx2`, `avx512`), as it pins the OpenBLAS kernel with `OPENBLAS_CORETYPE`. The choice also picks GELU's
/// loops (`GELU`, CKernels/GELU.c), which every kernel computes bitwise alike: only their speed follows it.
public enum DepthKernel: String, Sendable, CaseIterable, CustomStringConvertible {
    case baseline
    case avx2
    case avx512

    /// The environment variable that overrides the CPU-based choice.
    public static let variable = "ATTNRES_DEPTH_KERNEL"

    /// The kernel every depth-attention call uses unless told otherwise.
    public static let current: DepthKernel = choose(environment: getenv(variable).map { String(cString: $0) },
                                                    report: { fputs($0 + "\n", stderr) })

    /// Whether this CPU can run the kernel.
    public var isAvailable: Bool {
        switch self {
        case .baseline: return true
        case .avx2: return Self.cpuHasAVX2
        case .avx512: return Self.cpuHasAVX512
        }
    }

    /// The C kernels' function table (CKernels.h), nil for the baseline Swift kernel. Only for an available kernel.
    var fused: attnres_depth_kernels? {
        switch self {
        case .baseline: return nil
        case .avx2: return attnres_avx2_kernels
        case .avx512: return attnres_avx512_kernels
        }
    }

    /// What a CPU lacking the kernel lacks, for the message of `choose`.
    private var requirement: String {
        switch self {
        case .baseline: return "nothing"
        case .avx2: return "AVX2 or FMA"
        case .avx512: return "AVX-512F"
        }
    }

    /// The kernels this CPU can run (tests exercise each).
    public static var available: [DepthKernel] { allCases.filter(\.isAvailable) }

    private static let cpuHasAVX2 = attnres_avx2_fma_available() != 0
    private static let cpuHasAVX512 = attnres_avx512_available() != 0

    /// The fastest available kernel, or the one `requested` names. A request this CPU cannot serve, or a value that
    /// names no kernel, falls back to the automatic choice and says so through `report` (the variable is read while
    /// the first kernel runs, deep inside a computation, where there is no caller to throw to).
    static func choose(environment requested: String?, report: (String) -> Void) -> DepthKernel {
        let automatic: DepthKernel = cpuHasAVX512 ? .avx512 : cpuHasAVX2 ? .avx2 : .baseline
        guard let requested, !requested.isEmpty else { return automatic }
        guard let kernel = DepthKernel(rawValue: requested) else {
            report("attnres: \(variable)=\(requested) names no depth-attention kernel (expected one of "
                   + "\(allCases.map(\.rawValue).joined(separator: ", "))); using \(automatic)")
            return automatic
        }
        guard kernel.isAvailable else {
            report("attnres: \(variable)=\(requested), but this CPU lacks \(kernel.requirement); using \(automatic)")
            return automatic
        }
        return kernel
    }

    public var description: String {
        switch self {
        case .baseline: return "baseline (Swift SIMD, SSE2)"
        case .avx2: return "avx2 (AVX2 + FMA)"
        case .avx512: return "avx512 (AVX-512F)"
        }
    }
}

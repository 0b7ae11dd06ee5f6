#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// libm wrappers, in one file so the ops stay platform-neutral.
@inline(__always) func _tanh(_ x: Float) -> Float { tanhf(x) }
@inline(__always) func _exp(_ x: Float) -> Float { expf(x) }
@inline(__always) func _log(_ x: Float) -> Float { logf(x) }
@inline(__always) func _sqrt(_ x: Float) -> Float { x.squareRoot() }  // the llvm.sqrt intrinsic, vectorisable

/// e^x for a softmax argument x = z − max z: the maximum itself gives x = ±0, where e^x is exactly 1, so the libm call
/// is skipped there (the same value, one call fewer per softmax row; depth attention has only K ≤ N+1 terms a row,
/// so that is a large share of its calls). Any other x, NaN and ±inf included, goes to `expf` unchanged.
@inline(__always) func _expShifted(_ x: Float) -> Float { x == 0 ? 1 : expf(x) }

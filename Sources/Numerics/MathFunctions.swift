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

/// Dense matrix product `y = x · W` with weights stored `[in, out]` (DESIGN §3), on OpenBLAS `sgemm`.
public enum Matmul {
    /// Forward. x [n, k] · w [k, m] -> y [n, m].
    /// y is not zero-filled first: with beta = 0, sgemm never reads C (BLAS reference semantics; OpenBLAS's beta
    /// kernel stores zeros itself), so a fill would only write every element twice (tested with a NaN-filled C).
    public static func forward(_ x: Tensor, _ w: Tensor) -> Tensor {
        let n = x.rows, k = x.cols, m = w.cols
        precondition(w.count == k * m, "Matmul: x \(x.shape) · w \(w.shape)")
        BLAS.configureDeterministic()
        var y = Tensor(shape: [n, m], data: [Float](unsafeUninitializedCapacity: n * m) { $1 = n * m })
        x.data.withUnsafeBufferPointer { xp in
            w.data.withUnsafeBufferPointer { wp in
                y.data.withUnsafeMutableBufferPointer { yp in
                    BLAS.sgemm(transA: false, transB: false, m: n, n: m, k: k, alpha: 1,
                               a: xp.baseAddress!, lda: k, b: wp.baseAddress!, ldb: m,
                               beta: 0, c: yp.baseAddress!, ldc: m)
                }
            }
        }
        return y
    }

    /// Backward. dy [n, m] -> dx [n, k] += dy · Wᵀ and dw [k, m] += xᵀ · dy (both accumulate).
    public static func backward(_ dy: Tensor, x: Tensor, w: Tensor, dx: inout Tensor, dw: inout Tensor) {
        backwardInput(dy, w: w, dx: &dx)
        backwardWeight(dy, x: x, dw: &dw)
    }

    /// Backward to the input only: dx [n, k] += dy [n, m] · Wᵀ.
    public static func backwardInput(_ dy: Tensor, w: Tensor, dx: inout Tensor) {
        let n = dy.rows, m = dy.cols, k = w.rows
        precondition(dx.count == n * k && w.count == k * m)
        BLAS.configureDeterministic()
        dy.data.withUnsafeBufferPointer { dyp in
            w.data.withUnsafeBufferPointer { wp in
                dx.data.withUnsafeMutableBufferPointer { dxp in
                    BLAS.sgemm(transA: false, transB: true, m: n, n: k, k: m, alpha: 1,
                               a: dyp.baseAddress!, lda: m, b: wp.baseAddress!, ldb: m,
                               beta: 1, c: dxp.baseAddress!, ldc: k)
                }
            }
        }
    }

    /// Backward to the weight only: dw [k, m] += xᵀ · dy, x [n, k], dy [n, m].
    public static func backwardWeight(_ dy: Tensor, x: Tensor, dw: inout Tensor) {
        let n = dy.rows, m = dy.cols, k = x.cols
        precondition(dw.count == k * m && x.rows == n)
        BLAS.configureDeterministic()
        dy.data.withUnsafeBufferPointer { dyp in
            x.data.withUnsafeBufferPointer { xp in
                dw.data.withUnsafeMutableBufferPointer { dwp in
                    BLAS.sgemm(transA: true, transB: false, m: k, n: m, k: n, alpha: 1,
                               a: xp.baseAddress!, lda: k, b: dyp.baseAddress!, ldb: m,
                               beta: 1, c: dwp.baseAddress!, ldc: m)
                }
            }
        }
    }

    /// Naive triple loop, kept as the reference the BLAS path is tested against. x [n, k] · w [k, m] -> [n, m].
    public static func naive(_ x: Tensor, _ w: Tensor) -> Tensor {
        let n = x.rows, k = x.cols, m = w.cols
        var y = Tensor(zeros: [n, m])
        for i in 0..<n {
            for j in 0..<m {
                var s: Double = 0
                for p in 0..<k { s += Double(x.data[i * k + p]) * Double(w.data[p * m + j]) }
                y.data[i * m + j] = Float(s)
            }
        }
        return y
    }
}

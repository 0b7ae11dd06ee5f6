/// Reductions and exp written so LLVM emits SIMD code.
///
/// Swift forbids re-associating float sums, so a plain `for j { s += a[j]*b[j] }` runs one lane at a time. These
/// kernels keep 16 partial sums in a `SIMD16<Float>` and combine them in a fixed order: still deterministic (the
/// order depends only on the length), just a different rounding than the sequential sum.
enum VectorKernels {
    /// Σ a[j]·b[j] over n elements.
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var j = 0
        while j + 16 <= n {
            let x = UnsafeRawPointer(a + j).loadUnaligned(as: SIMD16<Float>.self)
            let y = UnsafeRawPointer(b + j).loadUnaligned(as: SIMD16<Float>.self)
            acc += x * y  // not addingProduct: without -mfma that becomes a libm fmaf call
            j += 16
        }
        var s = acc.sum()
        while j < n { s += a[j] * b[j]; j += 1 }
        return s
    }

    /// The 16 lanes of `v` summed as a tree (8 + 8, 4 + 4, 2 + 2, 1 + 1): three vector adds and one scalar add, where
    /// `SIMD16.sum()` is an ordered chain of 15 scalar adds. A fixed order too, so just as deterministic.
    @inline(__always)
    static func treeSum(_ v: SIMD16<Float>) -> Float {
        let a = v.lowHalf + v.highHalf
        let b = a.lowHalf + a.highHalf
        let c = b.lowHalf + b.highHalf
        return c[0] + c[1]
    }

    /// Σ a[j]·b[j] over n elements: 16 partial sums combined by `treeSum`, then the tail in order. The depth-attention
    /// kernels use it for their logits and gradients (K dots of length d per token, where the reduction is a large
    /// share of the work at small d).
    @inline(__always)
    static func treeDot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var j = 0
        while j + 16 <= n {
            acc += UnsafeRawPointer(a + j).loadUnaligned(as: SIMD16<Float>.self)
                * UnsafeRawPointer(b + j).loadUnaligned(as: SIMD16<Float>.self)
            j += 16
        }
        var s = treeSum(acc)
        while j < n { s += a[j] * b[j]; j += 1 }
        return s
    }

    /// (Σ w[j]·x[j], Σ x[j]²) in one pass over x; each sum is bitwise `treeDot(w, x, n)` and `treeDot(x, x, n)` (the
    /// same lanes, tree and tail order), so a key statistic computed here equals one computed alone.
    @inline(__always)
    static func treeDotAndSquares(_ w: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) -> (Float, Float) {
        var acc = SIMD16<Float>(repeating: 0), sq = SIMD16<Float>(repeating: 0)
        var j = 0
        while j + 16 <= n {
            let xv = UnsafeRawPointer(x + j).loadUnaligned(as: SIMD16<Float>.self)
            acc += UnsafeRawPointer(w + j).loadUnaligned(as: SIMD16<Float>.self) * xv
            sq += xv * xv
            j += 16
        }
        var s = treeSum(acc), q = treeSum(sq)
        while j < n { s += w[j] * x[j]; q += x[j] * x[j]; j += 1 }
        return (s, q)
    }

    /// Σ a[j]·b[j]·c[j] over n elements.
    @inline(__always)
    static func dot3(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = SIMD16<Float>(repeating: 0)
        var j = 0
        while j + 16 <= n {
            let x = UnsafeRawPointer(a + j).loadUnaligned(as: SIMD16<Float>.self)
            let y = UnsafeRawPointer(b + j).loadUnaligned(as: SIMD16<Float>.self)
            let z = UnsafeRawPointer(c + j).loadUnaligned(as: SIMD16<Float>.self)
            acc += x * y * z
            j += 16
        }
        var s = acc.sum()
        while j < n { s += a[j] * b[j] * c[j]; j += 1 }
        return s
    }

    /// e^x for Float32 without a libm call, so loops around it vectorise: Cody–Waite reduction x = k·ln2 + r,
    /// |r| ≤ ln2/2, degree-7 Taylor polynomial (truncation < 1e-8 relative), scale by 2^k through the exponent bits.
    /// Inputs are clamped to [-87, 88]; relative error ≤ 3e-7 (tested against libm over the whole range).
    @inline(__always)
    static func exp(_ x: Float) -> Float {
        let xc = min(max(x, -87), 88)
        // Round to nearest by the 1.5·2²³ trick: t's low mantissa bits then hold k + 2²², so k and 2^k come from
        // integer arithmetic on the bit pattern without any trapping conversion (which would block vectorisation).
        let magic: Float = 12582912
        let t = xc * 1.442695041 + magic
        let k = t - magic
        let r = (xc - k * 0.693145752) - k * 1.42860677e-6
        var p: Float = 1.0 / 5040
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        let scale = Float(bitPattern: (t.bitPattern &- magic.bitPattern &+ 127) &<< 23)
        return p * scale
    }
}

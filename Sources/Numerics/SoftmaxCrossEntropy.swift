/// Mean softmax cross-entropy of logits against integer targets (the language-model loss of DESIGN §3).
public enum SoftmaxCrossEntropy {
    /// What backward needs: the softmax probabilities [n, V].
    public struct Saved: Sendable { public var probs: Tensor }

    /// Forward. logits [n, V], targets [n] (each in 0..<V) -> mean over the n rows of −log softmax(logits)[target].
    public static func forward(logits: Tensor, targets: [Int32]) -> (Float, Saved) {
        let n = logits.rows, v = logits.cols
        precondition(targets.count == n, "SoftmaxCrossEntropy: \(targets.count) targets for \(n) rows")
        var probs = logits
        var total: Double = 0
        probs.data.withUnsafeMutableBufferPointer { p in
            for r in 0..<n {
                let row = p.baseAddress! + r * v
                var m = -Float.infinity
                for j in 0..<v { m = max(m, row[j]) }
                // The exponentials in a loop of their own, which vectorises (VectorKernels.exp: relative error
                // ≤ 3e-7, no libm call); the sum then in column order, as before.
                for j in 0..<v { row[j] = VectorKernels.exp(row[j] - m) }
                var s: Float = 0
                for j in 0..<v { s += row[j] }
                let inv = 1 / s
                for j in 0..<v { row[j] *= inv }
                let t = Int(targets[r])
                precondition(t >= 0 && t < v, "SoftmaxCrossEntropy: target \(t) outside vocab \(v)")
                total += Double(-_log(max(row[t], Float.leastNormalMagnitude)))
            }
        }
        return (Float(total / Double(n)), Saved(probs: probs))
    }

    /// Backward. dloss (scalar) -> dlogits [n, V] += dloss · (softmax − onehot(target)) / n.
    public static func backward(dloss: Float, targets: [Int32], saved: Saved, dlogits: inout Tensor) {
        let n = saved.probs.rows, v = saved.probs.cols
        let s = dloss / Float(n)
        saved.probs.data.withUnsafeBufferPointer { p in
            dlogits.data.withUnsafeMutableBufferPointer { g in
                for r in 0..<n {
                    for j in 0..<v { g[r * v + j] += s * p[r * v + j] }
                    g[r * v + Int(targets[r])] -= s
                }
            }
        }
    }
}

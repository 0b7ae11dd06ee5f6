import Foundation

/// sgemm throughput of whatever kernel OpenBLAS loaded in this process, with a correctness check against the naive
/// product (a fast kernel that computes wrong results must not win). Used by `attnres bench model`, which runs it in
/// child processes with different `OPENBLAS_CORETYPE` values because the kernel is fixed at library load.
public enum SgemmBenchmark {
    /// One measurement.
    public struct Result: Codable, Sendable {
        public var kernel: String
        public var m: Int, k: Int, n: Int
        public var gflops: Double
        /// ‖fast − naive‖∞ / (k · max|x| · max|w|): must stay near Float32 rounding (< 1e-6).
        public var relativeError: Double
    }

    /// Median GFLOP/s of [m, k] · [k, n] over repeated products (~`seconds` of work, at least 3 repetitions).
    public static func measure(m: Int, k: Int, n: Int, seconds: Double = 0.2) -> Result {
        BLAS.configureDeterministic()
        var rng = UInt64(12345)
        func next() -> Float {
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: rng >> 11) % 2001 - 1000) / 1000
        }
        let x = Tensor(shape: [m, k], data: (0..<(m * k)).map { _ in next() })
        let w = Tensor(shape: [k, n], data: (0..<(k * n)).map { _ in next() })
        var y = Matmul.forward(x, w)
        let checkRows = min(m, 16)
        let ref = Matmul.naive(Tensor(shape: [checkRows, k], data: Array(x.data[0..<(checkRows * k)])), w)
        var err: Float = 0
        for i in 0..<(checkRows * n) { err = max(err, abs(ref.data[i] - y.data[i])) }
        let flops = 2.0 * Double(m) * Double(k) * Double(n)
        let reps = max(3, Int(seconds * 20e9 / flops))
        var samples: [Double] = []
        let rounds = 5
        for _ in 0..<rounds {
            let t0 = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<max(1, reps / rounds) { y = Matmul.forward(x, w) }
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            samples.append(flops * Double(max(1, reps / rounds)) / dt / 1e9)
        }
        precondition(y.count == m * n)  // consume the result
        samples.sort()
        return Result(kernel: BLAS.coreName, m: m, k: k, n: n, gflops: samples[samples.count / 2],
                      relativeError: Double(err) / Double(k))
    }
}

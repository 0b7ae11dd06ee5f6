/// The small numerics calibration needs: order statistics and a non-negative least-squares fit of a few
/// coefficients (per-flop, per-byte, per-kernel and per-action seconds; link latency and seconds per byte).
public enum CalibrationMath {
    public static func median(_ v: [Double]) -> Double { quantile(v, 0.5) }

    public static func mean(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.reduce(0, +) / Double(v.count) }

    /// The mean of the middle 80 %: what a step pays on average, without the rare preemption that lasts longer
    /// than the whole step.
    public static func trimmedMean(_ v: [Double]) -> Double {
        guard !v.isEmpty else { return 0 }
        let s = v.sorted(), cut = s.count / 10
        let mid = s[cut..<(s.count - cut)]
        return mid.reduce(0, +) / Double(mid.count)
    }

    public static func quantile(_ v: [Double], _ q: Double) -> Double {
        guard !v.isEmpty else { return 0 }
        let s = v.sorted()
        let pos = q * Double(s.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, s.count - 1)
        return s[lo] + (s[hi] - s[lo]) * (pos - Double(lo))
    }

    /// min ‖A x − y‖ over x ≥ 0, by trying every subset of free columns (at most four here) with ordinary least
    /// squares on the scaled columns and keeping the best non-negative solution.
    public static func nonNegativeLeastSquares(_ a: [[Double]], _ y: [Double]) -> [Double] {
        let n = a.first?.count ?? 0
        let scale = (0..<n).map { j in max(a.map { abs($0[j]) }.max() ?? 0, 1e-300) }
        var best = [Double](repeating: 0, count: n), bestError = y.reduce(0) { $0 + $1 * $1 }
        for mask in 1..<(1 << n) {
            let cols = (0..<n).filter { mask & (1 << $0) != 0 }
            guard cols.count <= a.count else { continue }
            // Normal equations on the scaled columns, with a tiny ridge against collinear work features.
            var m = [[Double]](repeating: [Double](repeating: 0, count: cols.count + 1), count: cols.count)
            for (i, ci) in cols.enumerated() {
                for (j, cj) in cols.enumerated() { m[i][j] = zip(a, a).reduce(0) { $0 + $1.0[ci] / scale[ci] * $1.1[cj] / scale[cj] } }
                m[i][i] += 1e-9
                m[i][cols.count] = zip(a, y).reduce(0) { $0 + $1.0[ci] / scale[ci] * $1.1 }
            }
            guard let z = solve(m), z.allSatisfy({ $0 >= 0 && $0.isFinite }) else { continue }
            var x = [Double](repeating: 0, count: n)
            for (i, c) in cols.enumerated() { x[c] = z[i] / scale[c] }
            let err = zip(a, y).reduce(0.0) { acc, row in
                let r = zip(row.0, x).reduce(0) { $0 + $1.0 * $1.1 } - row.1
                return acc + r * r
            }
            if err < bestError * (1 - 1e-12) { best = x; bestError = err }
        }
        return best
    }

    /// Gauss-Jordan elimination with partial pivoting of an augmented n × (n+1) matrix.
    static func solve(_ m: [[Double]]) -> [Double]? {
        var m = m
        let n = m.count
        for i in 0..<n {
            guard let p = (i..<n).max(by: { abs(m[$0][i]) < abs(m[$1][i]) }), abs(m[p][i]) > 1e-300 else { return nil }
            m.swapAt(i, p)
            for r in 0..<n where r != i {
                let f = m[r][i] / m[i][i]
                for c in i...n { m[r][c] -= f * m[i][c] }
            }
        }
        return (0..<n).map { m[$0][n] / m[$0][$0] }
    }
}

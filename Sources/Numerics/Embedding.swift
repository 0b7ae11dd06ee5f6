/// Row lookup in a table: the token embedding E[x] and the learned positions Pos[0..s) (DESIGN §3).
public enum Embedding {
    /// Forward. ids [n] (each in 0..<V), table [V, d] -> out [n, d].
    public static func forward(ids: [Int32], table: Tensor) -> Tensor {
        let d = table.cols, v = table.rows
        var out = Tensor(zeros: [ids.count, d])
        table.data.withUnsafeBufferPointer { t in
            out.data.withUnsafeMutableBufferPointer { o in
                for (r, id) in ids.enumerated() {
                    let row = Int(id)
                    precondition(row >= 0 && row < v, "Embedding: id \(row) outside table of \(v) rows")
                    for j in 0..<d { o[r * d + j] = t[row * d + j] }
                }
            }
        }
        return out
    }

    /// Backward. dout [n, d] -> dtable [V, d] += scatter-add of rows (repeated ids add up).
    public static func backward(_ dout: Tensor, ids: [Int32], dtable: inout Tensor) {
        let d = dtable.cols
        dout.data.withUnsafeBufferPointer { g in
            dtable.data.withUnsafeMutableBufferPointer { t in
                for (r, id) in ids.enumerated() {
                    let row = Int(id)
                    for j in 0..<d { t[row * d + j] += g[r * d + j] }
                }
            }
        }
    }
}

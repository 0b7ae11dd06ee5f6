import Foundation
import Numerics

/// The depth-attention calls of one train step of a block or full model, timed alone: what share of the step's
/// overhead over the standard residual is the kernels themselves (`attnres bench model` prints it beside the step).
///
/// Per microbatch a train step computes the key statistics of each completed block once, one `DepthAttention.forward`
/// per layer over b_0 … b_n (and the partial inside a block) and one for the output attention over all blocks, then the
/// matching `backward` calls in reverse (the head's writing its gradients, the layers' accumulating). This replays
/// exactly that sequence of shapes on fixed pseudo-random tensors ([microbatch·seq, d] each), with the same cached
/// statistics, so it measures the kernels and their Swift wrappers with the step's cache footprint minus the sublayers.
public enum DepthAttentionProfile {
    /// Milliseconds per train step (all microbatches) of each part, medians over the rounds.
    public struct Timing: Sendable {
        public var keyStatistics: Double
        public var forward: Double
        public var backward: Double
        public var total: Double { keyStatistics + forward + backward }
    }

    /// The source counts K of a step's depth-attention calls in forward order: one per layer, then the output attention.
    public static func sourceCounts(_ c: ModelConfig) -> [Int] {
        guard c.usesDepthAttention else { return [] }
        var blocks = 1, open = false, counts: [Int] = []
        for l in 1...c.layers {
            counts.append(blocks + (open ? 1 : 0))
            open = true
            if c.endsBlock(l) { blocks += 1; open = false }
        }
        return counts + [blocks]
    }

    /// Times `repetitions` rounds (after 3 warm-up rounds) of the depth-attention calls of one step of `config`
    /// (`microbatches` × the calls of one microbatch of `sequences` sequences), with `kernel`.
    public static func measure(_ config: ModelConfig, microbatches: Int, sequences: Int, repetitions: Int,
                               kernel: DepthKernel = .current) -> Timing {
        let n = sequences * config.seq, d = config.hidden
        let counts = sourceCounts(config)
        precondition(!counts.isEmpty, "the standard residual has no depth attention")
        let blockCount = counts.last!
        var seed: UInt64 = 0x5EED
        func tensor(_ shape: [Int]) -> Tensor {
            var t = Tensor(zeros: shape)
            for i in 0..<t.count {
                seed = seed &* 6364136223846793005 &+ 1442695040888963407
                t.data[i] = Float(Int32(truncatingIfNeeded: seed >> 33)) / Float(1 << 31)
            }
            return t
        }
        let blocks = (0..<blockCount).map { _ in tensor([n, d]) }, partial = tensor([n, d])
        let queries = counts.map { _ in tensor([d]) }, dh = tensor([n, d])
        // the sources of each call: the completed blocks so far (their statistics cached), then the open partial
        var completed = 1
        var cachedCount: [Int] = []
        for l in 1...config.layers {
            cachedCount.append(completed)
            if config.endsBlock(l) { completed += 1 }
        }
        cachedCount.append(completed)
        let sourcesOf = counts.indices.map { i in Array(blocks[0..<cachedCount[i]]) + (counts[i] > cachedCount[i] ? [partial] : []) }
        var samples: [[Double]] = [[], [], []]
        var grads = (0...blockCount).map { _ in Tensor(zeros: [n, d]) }  // b_0 … b_N, then the partial's
        var dq = Tensor(zeros: [d])
        var sink: Float = 0
        for round in 0..<(3 + repetitions) {
            var t = [Double](repeating: 0, count: 3)
            for _ in 0..<microbatches {
                var t0 = DispatchTime.now().uptimeNanoseconds
                let rstd = blocks.map { Optional(DepthAttention.rstd($0, kernel: kernel)) }
                var t1 = DispatchTime.now().uptimeNanoseconds
                t[0] += Double(t1 - t0)
                var saved: [DepthAttention.Saved] = []
                saved.reserveCapacity(counts.count)
                for (i, sources) in sourcesOf.enumerated() {
                    let (h, s) = DepthAttention.forward(query: queries[i], sources: sources,
                                                        rstd: Array(rstd[0..<cachedCount[i]]), kernel: kernel)
                    sink += h.data[0]
                    saved.append(s)
                }
                t0 = DispatchTime.now().uptimeNanoseconds
                t[1] += Double(t0 - t1)
                for i in sourcesOf.indices.reversed() {
                    // move the gradients in and out (no copy), as the chunk's backward moves its HopActivations
                    let slots = Array(0..<cachedCount[i]) + (counts[i] > cachedCount[i] ? [blockCount] : [])
                    var ds = slots.map { j in let g = grads[j]; grads[j] = Tensor(zeros: [0]); return g }
                    DepthAttention.backward(dh, query: queries[i], sources: sourcesOf[i], saved: saved[i], dsources: &ds,
                                            dquery: &dq, accumulate: i != sourcesOf.count - 1, kernel: kernel)
                    for (j, g) in zip(slots, ds) { grads[j] = g }
                }
                t1 = DispatchTime.now().uptimeNanoseconds
                t[2] += Double(t1 - t0)
            }
            if round >= 3 { for p in 0..<3 { samples[p].append(t[p] / 1e6) } }
        }
        precondition(!sink.isNaN || sink.isNaN)  // consumed
        let median = samples.map { s -> Double in let sorted = s.sorted(); return sorted[sorted.count / 2] }
        return Timing(keyStatistics: median[0], forward: median[1], backward: median[2])
    }
}

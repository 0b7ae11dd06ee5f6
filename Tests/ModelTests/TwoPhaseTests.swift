import XCTest
@testable import Model
@testable import Numerics

/// Two-phase depth attention equals the one-pass result: relative error ‖a − b‖∞ / ‖b‖∞ ≤ 1e-5 for every layer
/// input h_l and the logits, over many shapes (blocks of one layer, a remainder last block, N = 1, full).
final class TwoPhaseTests: XCTestCase {
    static let tolerance: Float = 1e-5

    func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        var m: Float = 0
        for x in b.data { m = max(m, abs(x)) }
        return a.maxAbsDifference(b) / max(m, .leastNormalMagnitude)
    }

    func testTwoPhaseEqualsOnePassOverManyShapes() throws {
        // (layers, blocks, residual): S = 1 blocks, remainders (7/3 → S=2, last block 3 layers; 5/4 → last block 2),
        // a single block, full AttnRes, and odd widths/heads.
        let cases: [(Int, Int, ResidualKind, Int, Int)] = [
            (4, 4, .block, 8, 2), (7, 3, .block, 8, 2), (5, 4, .block, 12, 3), (6, 1, .block, 8, 1),
            (6, 6, .full, 8, 4), (9, 2, .block, 16, 4), (3, 2, .block, 4, 1), (1, 1, .block, 8, 2),
        ]
        for (i, (layers, blocks, kind, hidden, heads)) in cases.enumerated() {
            let c = ModelConfig(layers: layers, hidden: hidden, heads: heads, seq: 5, vocab: 32, residual: kind, blocks: blocks)
            let model = try Transformer(config: c)
            let p = Fixtures.perturbedParameters(model, seed: UInt64(10 + i))
            let mb = Fixtures.microbatches(c, seed: UInt64(i), m: 1, b: 2)[0]
            let inference = try Inference(config: c)
            let one = inference.forward(mb, parameters: p, mode: .onePass)
            let two = inference.forward(mb, parameters: p, mode: .twoPhase)
            XCTAssertEqual(one.layerInputs.count, layers)
            for l in 0..<layers {
                XCTAssertLessThanOrEqual(relativeError(two.layerInputs[l], one.layerInputs[l]), Self.tolerance,
                                         "case \(i) layer \(l + 1)")
            }
            XCTAssertLessThanOrEqual(relativeError(two.logits, one.logits), Self.tolerance, "case \(i) logits")
            // and the one-pass inference path is the training forward: same loss
            let loss = SoftmaxCrossEntropy.forward(logits: one.logits, targets: mb.targets).0
            XCTAssertEqual(loss, model.loss(mb, parameters: p), accuracy: 1e-6 * max(1, loss))
        }
    }

    func testPhase2MergeIsTheOnlineSoftmax() {
        // Direct op-level check: phase1 over K sources + merge of one partial == one-pass over K+1 sources.
        var rng = SplitMix64(seed: 77)
        func tensor(_ shape: [Int], _ s: Double) -> Tensor {
            Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextNormal() * s) })
        }
        let sources = (0..<3).map { _ in tensor([4, 6], 1) }, partial = tensor([4, 6], 3)
        let queries = [tensor([6], 2), tensor([6], 2)]
        let stats = DepthAttentionTwoPhase.phase1(queries: queries, keys: DepthAttentionTwoPhase.keys(sources), tokens: 4)
        for (i, q) in queries.enumerated() {
            let merged = DepthAttentionTwoPhase.merge(stats[i], sources: sources, query: q, partial: partial)
            let ref = DepthAttention.forward(query: q, sources: sources + [partial]).0
            XCTAssertLessThanOrEqual(relativeError(merged, ref), Self.tolerance)
            // the unnormalised phase-1 output with its stats reproduces the softmax: o/ℓ = one-pass over K sources
            var o = stats[i].output(sources: sources)
            for r in 0..<4 { for j in 0..<6 { o.data[r * 6 + j] /= stats[i].sum[r] } }
            XCTAssertLessThanOrEqual(relativeError(o, DepthAttention.forward(query: q, sources: sources).0), Self.tolerance)
            let first = DepthAttentionTwoPhase.normalize(stats[i], sources: sources)
            XCTAssertLessThanOrEqual(relativeError(first, DepthAttention.forward(query: q, sources: sources).0), Self.tolerance)
        }
    }

    func testPhase1FromTheBlocksEqualsPhase1FromStackedKeys() throws {
        // The C kernels' phase 1 (AVX2, AVX-512: dots with the blocks, scaled by their key statistics) against the sgemm
        // one over the normalised keys: weights, max and normaliser within the tolerance; merged, it equals one-pass.
        let fused = DepthKernel.available.filter { $0 != .baseline }
        guard !fused.isEmpty else { throw XCTSkip("this CPU has no AVX2 + FMA") }
        for kernel in fused {
            var rng = SplitMix64(seed: 78)
            func tensor(_ shape: [Int], _ s: Double) -> Tensor {
                Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextNormal() * s) })
            }
            for (n, d, k, sCount) in [(1, 1, 1, 1), (4, 6, 3, 2), (7, 37, 4, 3), (64, 64, 5, 2), (3, 256, 2, 5), (17, 100, 9, 3)] {
                let sources = (0..<k).map { _ in tensor([n, d], 1) }, partial = tensor([n, d], 2)
                let queries = (0..<sCount).map { _ in tensor([d], 2) }
                let rstd = sources.flatMap { DepthAttention.rstd($0, kernel: kernel) }
                let fused = DepthAttentionTwoPhase.phase1(queries: queries, sources: sources, rstd: rstd, kernel: kernel)
                let ref = DepthAttentionTwoPhase.phase1(queries: queries, keys: DepthAttentionTwoPhase.keys(sources), tokens: n)
                XCTAssertEqual(fused.count, sCount)
                for s in 0..<sCount {
                    let label = "\(kernel.rawValue) n=\(n) d=\(d) K=\(k) query \(s)"
                    XCTAssertLessThanOrEqual(relativeError(Tensor(shape: [k * n], data: fused[s].weights),
                                                           Tensor(shape: [k * n], data: ref[s].weights)), Self.tolerance, label)
                    XCTAssertLessThanOrEqual(relativeError(Tensor(shape: [n], data: fused[s].max), Tensor(shape: [n], data: ref[s].max)),
                                             Self.tolerance, label)
                    XCTAssertLessThanOrEqual(relativeError(Tensor(shape: [n], data: fused[s].sum), Tensor(shape: [n], data: ref[s].sum)),
                                             Self.tolerance, label)
                    let merged = DepthAttentionTwoPhase.merge(fused[s], sources: sources, query: queries[s], partial: partial,
                                                              kernel: kernel)
                    let onePass = DepthAttention.forwardReference(query: queries[s], sources: sources + [partial]).0
                    XCTAssertLessThanOrEqual(relativeError(merged, onePass), Self.tolerance, label)
                }
            }
        }
    }

    func testCachedKeyStatisticsAreBitwiseTheRecomputedOnes() {
        // The caches (completed blocks' rstd in training and one-pass, keys appended block by block in two-phase)
        // must change no bit: they hold exactly what the uncached code computes.
        var rng = SplitMix64(seed: 91)
        func tensor(_ shape: [Int], _ s: Double) -> Tensor {
            Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in Float(rng.nextNormal() * s) })
        }
        for d in [6, 16, 37, 64] {
            let sources = (0..<4).map { _ in tensor([5, d], 2) }, w = tensor([d], 1), dh = tensor([5, d], 1)
            let ref = DepthAttention.forward(query: w, sources: sources)
            for cached in [[], [DepthAttention.rstd(sources[0])], sources.dropLast().map { DepthAttention.rstd($0) },
                           [nil, DepthAttention.rstd(sources[1])]] as [[[Float]?]] {
                let got = DepthAttention.forward(query: w, sources: sources, rstd: cached)
                XCTAssertEqual(got.0, ref.0)
                XCTAssertEqual(got.1.rstd, ref.1.rstd); XCTAssertEqual(got.1.logits, ref.1.logits)
                XCTAssertEqual(got.1.alpha, ref.1.alpha)
                var ds1 = sources.map { Tensor(zeros: $0.shape) }, ds2 = ds1, dw1 = Tensor(zeros: [d]), dw2 = dw1
                DepthAttention.backward(dh, query: w, sources: sources, saved: ref.1, dsources: &ds1, dquery: &dw1)
                DepthAttention.backward(dh, query: w, sources: sources, saved: got.1, dsources: &ds2, dquery: &dw2)
                XCTAssertEqual(ds1, ds2); XCTAssertEqual(dw1, dw2)
            }
            // (the fused kernels against their plain loops: NumericsTests.DepthAttentionKernelTests, with tolerance)
            // the tiled weighted sum of the forward equals its plain reference bit for bit
            let weights = (0..<(4 * 5)).map { _ in Float(rng.nextNormal()) }
            var m1 = tensor([5, d], 1).data, m2 = m1
            weights.withUnsafeBufferPointer { wp in
                m1.withUnsafeMutableBufferPointer {
                    DepthAttention.mix(sources: sources, weights: wp, into: $0.baseAddress!, rows: 5, cols: d,
                                       kernel: .baseline)
                }
                m2.withUnsafeMutableBufferPointer {
                    DepthAttention.mixReference(sources: sources, weights: wp, into: $0.baseAddress!, rows: 5, cols: d)
                }
            }
            XCTAssertEqual(m1.map(\.bitPattern), m2.map(\.bitPattern), "d = \(d)")
            // phase 2's combine (via `mix`) equals the plain row-by-row, source-by-source loop bit for bit
            let stats = DepthAttentionTwoPhase.phase1(queries: [w], keys: DepthAttentionTwoPhase.keys(sources), tokens: 5)[0]
            var plain = Tensor(zeros: [5, d])
            for r in 0..<5 {
                let inv = 1 / stats.sum[r]
                for i in 0..<4 {
                    let c = stats.weights[i * 5 + r] * inv
                    for j in 0..<d { plain.data[r * d + j] += c * sources[i].data[r * d + j] }
                }
            }
            XCTAssertEqual(DepthAttentionTwoPhase.normalize(stats, sources: sources, kernel: .baseline).data.map(\.bitPattern),
                           plain.data.map(\.bitPattern), "d = \(d)")
            var rstd: [Float] = [], stacked: [Float] = []
            for src in sources { stacked += DepthAttentionTwoPhase.keys([src], rstd: &rstd).data }
            XCTAssertEqual(stacked, DepthAttentionTwoPhase.keys(sources).data)
            XCTAssertEqual(rstd, sources.flatMap { DepthAttention.rstd($0) })
        }
        for x: Float in [0, -0.0, 1e-30, -1e-30, -1, -87.5, -200, .infinity, -.infinity, .nan] {
            XCTAssertEqual(_expShifted(x).bitPattern, _exp(x).bitPattern, "x = \(x)")
        }
    }

    func testInferenceWithCachedKeysIsBitwiseTheUncachedForward() throws {
        // Inference keeps each completed block's keys and rstd instead of renormalising every block per block; the
        // uncached reference below (keys of all blocks per block, no rstd cache) must give the same bits.
        for (layers, blocks, kind) in [(8, 4, ResidualKind.block), (7, 3, .block), (5, 5, .full), (6, 1, .block)] {
            let c = ModelConfig(layers: layers, hidden: 16, heads: 2, seq: 6, vocab: 32, residual: kind, blocks: blocks)
            let model = try Transformer(config: c)
            let p = Fixtures.perturbedParameters(model, seed: 5)
            let mb = Fixtures.microbatches(c, seed: 3, m: 1, b: 2)[0], b = mb.sequences
            let inference = try Inference(config: c)
            for mode in Inference.Mode.allCases {
                var v0 = Embedding.forward(ids: mb.tokens, table: p["embed.weight"])
                v0.add(Embedding.forward(ids: (0..<(b * c.seq)).map { Int32($0 % c.seq) }, table: p["pos.weight"]))
                var done = [v0], inputs: [Tensor] = []
                for n in 1...c.effectiveBlocks {
                    let first = c.partition!.firstLayer(ofBlock: n), last = c.partition!.lastLayer(ofBlock: n)
                    let queries = (first...last).map { p["layers.\($0).query"] }
                    // phase 1 as Inference runs it: from stacked keys by sgemm (baseline kernel) or from the blocks
                    let stats = DepthKernel.current == .baseline
                        ? DepthAttentionTwoPhase.phase1(queries: queries, keys: DepthAttentionTwoPhase.keys(done), tokens: v0.rows)
                        : DepthAttentionTwoPhase.phase1(queries: queries, sources: done,
                                                        rstd: done.flatMap { DepthAttention.rstd($0) })
                    var partial: Tensor? = nil
                    for (i, l) in (first...last).enumerated() {
                        let h: Tensor
                        if mode == .onePass {
                            h = DepthAttention.forward(query: queries[i], sources: partial.map { done + [$0] } ?? done).0
                        } else {
                            h = partial.map { DepthAttentionTwoPhase.merge(stats[i], sources: done, query: queries[i],
                                                                           partial: $0) }
                                ?? DepthAttentionTwoPhase.normalize(stats[i], sources: done)
                        }
                        inputs.append(h)
                        let v = Sublayer.forward(layer: l, h, batch: b, config: c, parameters: p).0
                        if partial == nil { partial = v } else { partial!.add(v) }
                    }
                    done.append(partial!)
                }
                let o = DepthAttention.forward(query: p["layers.\(c.layers + 1).query"], sources: done).0
                let logits = Matmul.forward(RMSNorm.forward(o, gain: p["final_norm.gain"]).0, p["head.weight"])
                let got = inference.forward(mb, parameters: p, mode: mode)
                XCTAssertEqual(got.layerInputs, inputs, "\(kind) L=\(layers) N=\(blocks) \(mode)")
                XCTAssertEqual(got.logits, logits, "\(kind) L=\(layers) N=\(blocks) \(mode)")
            }
        }
    }
}

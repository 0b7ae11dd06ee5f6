import XCTest
@testable import Model
@testable import Numerics

final class TrainerTests: XCTestCase {
    func config(_ kind: ResidualKind) -> TrainConfig {
        TrainConfig(model: ModelConfig(layers: 4, hidden: 16, heads: 2, seq: 8, vocab: 128, residual: kind, blocks: 2),
                    microbatches: 2, microbatchSize: 2, steps: 12, seed: 4, learningRate: 1e-2)
    }

    func testLossFallsForEveryResidualKind() throws {
        for kind in ResidualKind.allCases {
            let c = config(kind)
            var t = try Trainer(config: c, data: .synthetic(seq: c.model.seq, vocab: c.model.vocab, seed: c.seed))
            let losses = (0..<c.steps).map { _ in t.step().loss }
            XCTAssertEqual(losses[0], log(128), accuracy: 0.1, "\(kind): initial loss near uniform")
            let first = losses.prefix(3).reduce(0, +) / 3, last = losses.suffix(3).reduce(0, +) / 3
            XCTAssertLessThan(last, first - 0.5, "\(kind): \(losses)")
        }
    }

    func testTrainingIsBitwiseReproducibleAndChunkingInvariant() throws {
        let c = config(.block)
        func run(chunks: Int) throws -> [UInt32] {
            var t = try Trainer(config: c, data: .synthetic(seq: c.model.seq, vocab: c.model.vocab, seed: c.seed),
                                chunks: chunks)
            return (0..<4).map { _ in t.step().loss.bitPattern }
        }
        let a = try run(chunks: 1)
        XCTAssertEqual(a, try run(chunks: 1))
        XCTAssertEqual(a, try run(chunks: 3))
    }

    func testAdamWFirstStepMovesEachWeightByLearningRate() {
        // With bias correction, step 1 moves every weight by lr·sign(g) (|g| ≫ ε) plus decoupled decay lr·wd·p.
        let spec = ParameterSpec(name: "w", shape: [3], kind: .matrix)
        var p = ParameterSet(); p.insert(spec, Tensor(shape: [3], data: [1, 0, -1]))
        var g = p.zerosLike(); g["w"] = Tensor(shape: [3], data: [0.5, -2, 3])
        var opt = AdamW(parameters: p, learningRate: 0.1)
        opt.update(&p, gradients: g)
        XCTAssertEqual(p["w"].data[0], 1 - 0.1 - 0.1 * 0.1 * 1, accuracy: 1e-6)
        XCTAssertEqual(p["w"].data[1], 0 + 0.1, accuracy: 1e-6)
        XCTAssertEqual(p["w"].data[2], -1 - 0.1 + 0.1 * 0.1 * 1, accuracy: 1e-6)
    }
}

final class AdamWKernelTests: XCTestCase {
    /// The SIMD lanes and the scalar tail compute the same IEEE operations: a 13-element update (8 SIMD + 5 scalar)
    /// must equal the scalar formula bit for bit, element by element.
    func testSIMDAndScalarPathsAgreeBitwise() {
        var rng = SplitMix64(seed: 5)
        let n = 13
        var p = (0..<n).map { _ in Float(rng.nextNormal()) }, m = (0..<n).map { _ in Float(rng.nextNormal()) * 0.1 }
        var v = (0..<n).map { _ in Float(rng.nextUniform()) * 0.01 }
        let g = (0..<n).map { _ in Float(rng.nextNormal()) }
        var (ep, em, ev) = (p, m, v)
        for i in 0..<n {  // scalar reference, same operation order
            em[i] = 0.9 * em[i] + (1 - 0.9) * g[i]
            ev[i] = 0.95 * ev[i] + (1 - 0.95) * g[i] * g[i]
            let mhat = em[i] / 0.19, vhat = ev[i] / 0.0975
            ep[i] -= 0.01 * (mhat / (vhat.squareRoot() + 1e-8) + 0.1 * ep[i])
        }
        p.withUnsafeMutableBufferPointer { pp in m.withUnsafeMutableBufferPointer { mp in
            v.withUnsafeMutableBufferPointer { vp in g.withUnsafeBufferPointer { gp in
                AdamW.kernel(p: pp.baseAddress!, g: gp.baseAddress!, m: mp.baseAddress!, v: vp.baseAddress!, count: n,
                             lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, decay: 0.1, c1: 0.19, c2: 0.0975)
            }}
        }}
        XCTAssertEqual(p.map(\.bitPattern), ep.map(\.bitPattern))
        XCTAssertEqual(m.map(\.bitPattern), em.map(\.bitPattern))
        XCTAssertEqual(v.map(\.bitPattern), ev.map(\.bitPattern))
    }
}

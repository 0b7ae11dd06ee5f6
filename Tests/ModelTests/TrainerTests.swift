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

import XCTest
@testable import Model
@testable import Numerics

/// Init per parameter name, batches per (seed, step), block partition: the facts other processes rely on.
final class DeterminismTests: XCTestCase {
    func testInitDependsOnlyOnSeedAndName() throws {
        let c = Fixtures.config(.block)
        let whole = try Transformer(config: c).initialParameters(seed: 7)
        let split = try Transformer(config: c, chunks: 3)
        for chunk in split.chunks {  // a rank building only its chunk gets the same values
            let own = ParameterSet(initializing: chunk.parameterSpecs, seed: 7, layers: c.layers)
            for n in own.names { XCTAssertEqual(own[n], whole[n], n) }
        }
        XCTAssertEqual(whole.names.count, ParameterNames.all(config: c).count)
        XCTAssertEqual(whole["layers.6.query"], Tensor(zeros: [8]))
        XCTAssertEqual(whole["final_norm.gain"], Tensor(repeating: 1, shape: [8]))
        let other = try Transformer(config: c).initialParameters(seed: 8)
        XCTAssertNotEqual(other["layers.1.attn.wq"], whole["layers.1.attn.wq"])
        XCTAssertNotEqual(whole["layers.1.attn.wq"], whole["layers.1.attn.wk"])
        let w = whole["head.weight"]
        XCTAssertEqual(w.rms, 0.02, accuracy: 0.005)  // N(0, 0.02²)
    }

    func testParameterNamesFollowTheIssue() {
        let names = ParameterNames.all(config: Fixtures.config(.block, layers: 2, blocks: 1)).map(\.name)
        XCTAssertEqual(names, ["embed.weight", "pos.weight",
                               "layers.1.norm.gain", "layers.1.attn.wq", "layers.1.attn.wk", "layers.1.attn.wv",
                               "layers.1.attn.wo", "layers.1.query",
                               "layers.2.norm.gain", "layers.2.mlp.w1", "layers.2.mlp.w2", "layers.2.query",
                               "layers.3.query", "final_norm.gain", "head.weight"])
    }

    func testBatchIsAPureFunctionOfSeedAndStep() {
        let a = BatchSource.synthetic(seq: 8, vocab: 256, seed: 1), b = BatchSource.synthetic(seq: 8, vocab: 256, seed: 1)
        XCTAssertEqual(a.batch(step: 3, microbatches: 2, microbatchSize: 2), b.batch(step: 3, microbatches: 2, microbatchSize: 2))
        XCTAssertNotEqual(a.batch(step: 3, microbatches: 2, microbatchSize: 2), a.batch(step: 4, microbatches: 2, microbatchSize: 2))
        let c = BatchSource.synthetic(seq: 8, vocab: 256, seed: 2)
        XCTAssertNotEqual(a.batch(step: 3, microbatches: 1, microbatchSize: 2), c.batch(step: 3, microbatches: 1, microbatchSize: 2))
        let mb = a.batch(step: 1, microbatches: 1, microbatchSize: 1)[0]
        XCTAssertEqual(Array(mb.tokens.dropFirst()), Array(mb.targets.dropLast()))  // targets are the next bytes
    }

    func testBlockPartitionMatchesDesign() {
        let c = ModelConfig(layers: 8, residual: .block, blocks: 3)  // S = 2: {1,2} {3,4} {5,6,7,8}
        XCTAssertEqual((1...8).map { c.block(ofLayer: $0) }, [1, 1, 2, 2, 3, 3, 3, 3])
        XCTAssertEqual((1...8).filter { c.endsBlock($0) }, [2, 4, 8])
        let f = ModelConfig(layers: 4, residual: .full)
        XCTAssertEqual((1...4).filter { f.endsBlock($0) }, [1, 2, 3, 4])
        let layout = try! ChunkLayout(layers: 8, chunks: 3)
        XCTAssertEqual((0..<3).map { layout.layers(ofChunk: $0) }, [1...2, 3...5, 6...8])
        XCTAssertThrowsError(try ChunkLayout(layers: 2, chunks: 3))
        XCTAssertThrowsError(try ModelConfig(hidden: 10, heads: 4).validate())
    }
}

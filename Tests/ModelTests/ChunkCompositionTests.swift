import XCTest
@testable import Model
@testable import Numerics

/// The single-process model is the composition of chunk calls; any chunking must give bitwise-identical results.
final class ChunkCompositionTests: XCTestCase {
    func testChunkingGivesBitwiseIdenticalLossAndGradients() throws {
        for kind in ResidualKind.allCases {
            let c = Fixtures.config(kind)
            let reference = try Transformer(config: c, chunks: 1)
            let p = Fixtures.perturbedParameters(reference)
            let mbs = Fixtures.microbatches(c)
            var g1 = p.zerosLike()
            let loss1 = reference.lossAndGradients(mbs, parameters: p, gradients: &g1)
            for chunks in [3, 4, 5] {
                let split = try Transformer(config: c, chunks: chunks)
                var g = p.zerosLike()
                let loss = split.lossAndGradients(mbs, parameters: p, gradients: &g)
                XCTAssertEqual(loss.bitPattern, loss1.bitPattern, "\(kind) C=\(chunks) loss")
                for n in p.names { XCTAssertEqual(g[n], g1[n], "\(kind) C=\(chunks) gradient \(n)") }
            }
        }
    }

    func testHopCarriesBlocksAndPartialPerDesign() throws {
        // block N=2 on L=5: S=2, blocks {1,2} and {3,4,5}. With C=5 each chunk is one layer.
        let c = Fixtures.config(.block)
        let model = try Transformer(config: c, chunks: 5)
        let p = model.initialParameters(seed: 1)
        let mb = Fixtures.microbatches(c)[0]
        var act: HopActivations? = nil
        var shapes: [(Int, Bool)] = []
        for chunk in model.chunks.dropLast() {
            act = chunk.forward(act, microbatch: mb, parameters: p).output
            shapes.append((act!.blocks.count, act!.partial != nil))
        }
        // after layer 1: [b0] + partial; 2: [b0,b1]; 3: [b0,b1] + partial; 4: [b0,b1] + partial
        XCTAssertEqual(shapes.map { $0.0 }, [1, 2, 2, 2])
        XCTAssertEqual(shapes.map { $0.1 }, [true, false, true, true])
        XCTAssertEqual(act!.tensors.count, 3)
    }

    func testFullIsBlockWithOneLayerPerBlock() throws {
        let full = try Transformer(config: Fixtures.config(.full))
        let block = try Transformer(config: Fixtures.config(.block, blocks: 5))
        let p = Fixtures.perturbedParameters(full)
        let mbs = Fixtures.microbatches(full.config)
        var g1 = p.zerosLike(), g2 = p.zerosLike()
        XCTAssertEqual(full.lossAndGradients(mbs, parameters: p, gradients: &g1),
                       block.lossAndGradients(mbs, parameters: p, gradients: &g2))
        for n in p.names { XCTAssertEqual(g1[n], g2[n], n) }
    }

    func testZeroQueriesMakeStepZeroInputsStandard() throws {
        // With w = 0, h_l is the mean of the sources, i.e. (standard residual sum)/count; PreNorm removes the scale,
        // so the first sublayer's output is identical in both modes (paper §3.1, inferred in PAPER.md).
        let std = try Transformer(config: Fixtures.config(.standard)), full = try Transformer(config: Fixtures.config(.full))
        let ps = std.initialParameters(seed: 2), pf = full.initialParameters(seed: 2)
        for n in ps.names { XCTAssertEqual(ps[n], pf[n], n) }  // shared names get identical values
        let mb = Fixtures.microbatches(std.config)[0]
        let ts = std.chunks[0].forward(nil, microbatch: mb, parameters: ps).tape
        let tf = full.chunks[0].forward(nil, microbatch: mb, parameters: pf).tape
        XCTAssertEqual(ts.layers[0].output, tf.layers[0].output)
        // Equal up to RMSNorm's eps (1e-6 against a mean square ~2e-4 for halved embeddings): percent level at most.
        let out = ts.layers[1].output
        XCTAssertLessThan(out.maxAbsDifference(tf.layers[1].output), 5e-2 * out.rms)
    }
}

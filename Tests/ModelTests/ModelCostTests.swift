import XCTest
@testable import Model

/// The cost model behind the floors of `attnres bench model`: known answers for its parts, and the block-minus-standard
/// difference equal to the depth-attention terms counted by hand.
final class ModelCostTests: XCTestCase {
    func testPartsHaveTheirKnownCosts() {
        XCTAssertEqual(Cost.product(2, 3, 4), Cost(flops: 48, bytes: 4 * (6 + 12 + 8)))
        XCTAssertEqual(Cost.productBackward(2, 3, 4).flops, 96)
        XCTAssertEqual(Cost.elementwise(10, flops: 3, reads: 2, writes: 1), Cost(flops: 30, bytes: 120))
        let model = ModelCost(config: ModelConfig(layers: 2, hidden: 8, heads: 2, seq: 4, vocab: 16, residual: .block, blocks: 2))
        // one depth attention over 3 sources of [n = 4, d = 8], 2 of them with cached keys: logits and weighted sum
        // 4·K·d, softmax 4·K, the partial's statistics 2·d per token; reads 3 sources, writes h
        let forward = model.depthAttention(sources: 3, cachedKeys: 2, 4, backward: false)
        XCTAssertEqual(forward, Cost(flops: 4 * (4 * 3 * 8 + 4 * 3 + 2 * 8), bytes: 4 * 4 * 4 * 8))
        let both = model.depthAttention(sources: 3, cachedKeys: 2, 4, backward: true)
        XCTAssertEqual(both.flops - forward.flops, 4 * (10 * 3 * 8 + 4 * 3))
    }

    func testBlockMinusStandardIsTheDepthAttentionWork() {
        let std = ModelConfig(layers: 4, hidden: 16, heads: 2, seq: 8, vocab: 32, residual: .standard, blocks: 2)
        var block = std; block.residual = .block
        let n = 2 * 8, d = 16
        let costStd = ModelCost(config: std).trainStep(microbatches: 1, sequences: 2)
        let costBlock = ModelCost(config: block).trainStep(microbatches: 1, sequences: 2)
        // by hand, per layer (block size 2): K = 1, 2, 2, 3 sources (cached 1, 1, 2, 2), partial adds on layers 2 and
        // 4, minus standard's 4 residual adds; the output attention over 3 blocks; 3 completed blocks' statistics;
        // AdamW over the 5 pseudo-queries
        let m = ModelCost(config: block)
        var extra = Cost()
        for (k, cached) in [(1, 1), (2, 1), (2, 2), (3, 2)] { extra += m.depthAttention(sources: k, cachedKeys: cached, n, backward: true) }
        extra += 2 * Cost.elementwise(n * d, flops: 1, reads: 2, writes: 1)
        extra += -4 * Cost.elementwise(n * d, flops: 1, reads: 2, writes: 1)
        extra += m.depthAttention(sources: 3, cachedKeys: 3, n, backward: true)
        extra += 3 * Cost.elementwise(n * d, flops: 2, reads: 1, writes: 0)
        extra += Cost(flops: 14 * 5 * Double(d), bytes: 32 * 5 * Double(d))
        XCTAssertEqual(costBlock.flops - costStd.flops, extra.flops, accuracy: 1e-6 * costStd.flops)
        XCTAssertEqual(costBlock.bytes - costStd.bytes, extra.bytes, accuracy: 1e-6 * costStd.bytes)
    }

    func testFloorShrinksWithWidth() {
        // depth attention is O(K·d) per token against O(d²) for the sublayer, so the FLOPs floor falls with d
        func floor(_ d: Int) -> Double {
            let std = ModelConfig(layers: 8, hidden: d, heads: 4, seq: 32, vocab: 256, residual: .standard, blocks: 4)
            var block = std; block.residual = .block
            return ModelCost(config: block).trainStep(microbatches: 4, sequences: 2).flops
                / ModelCost(config: std).trainStep(microbatches: 4, sequences: 2).flops
        }
        XCTAssertGreaterThan(floor(64), floor(256))
        XCTAssertGreaterThan(floor(256), 1)
        XCTAssertLessThan(floor(64), 1.05)
    }
}

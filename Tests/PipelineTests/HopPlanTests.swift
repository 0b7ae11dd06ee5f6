import XCTest
import Model
@testable import Pipeline

final class HopPlanTests: XCTestCase {
    func testLayoutSplitsLayersContiguously() {
        let l = Layout(ranks: 3, virtualStages: 2, layers: 13)
        var next = 1
        for k in 0..<l.chunks {
            let r = l.layers(ofChunk: k)
            XCTAssertEqual(r.lowerBound, next)
            XCTAssertFalse(r.isEmpty)
            next = r.upperBound + 1
        }
        XCTAssertEqual(next, 14)
        XCTAssertEqual(l.chunks(onRank: 1), [1, 4])
    }

    func testBlockPartitionRemainderGoesToLastBlock() {
        let b = BlockPartition(layers: 10, blocks: 3)  // S = 3: [1-3] [4-6] [7-10]
        XCTAssertEqual(b.block(ofLayer: 10), 3)
        XCTAssertEqual(b.lastLayer(ofBlock: 3), 10)
        XCTAssertEqual(b.completedBlocks(afterLayer: 6), [0, 1, 2])
        XCTAssertNil(b.openPartial(afterLayer: 6))
        XCTAssertEqual(b.openPartial(afterLayer: 8)?.block, 3)
        XCTAssertEqual(b.openPartial(afterLayer: 8)?.layers, 2)
        XCTAssertNil(b.openPartial(afterLayer: 3))
    }

    /// The paper's Figure 3: 4 ranks × 2 virtual stages, each block spanning two chunks.
    func testPaperFigure3() {
        let layout = Layout(ranks: 4, virtualStages: 2, layers: 8)
        // The paper counts block representations only; hops inside a block also carry the partial b_n^1.
        func blocksOnly(_ plan: HopPlan) -> [[TensorRole]] { plan.tensors.map { $0.filter { $0.kind == .block } } }
        let naive = blocksOnly(HopPlan(layout: layout, residual: .init(kind: .block, blocks: 4, cache: .none)))
        XCTAssertEqual(naive.map(\.count), [1, 2, 2, 3, 3, 4, 4])
        let paper = blocksOnly(HopPlan(layout: layout, residual: .init(kind: .block, blocks: 4, cache: .receivedOnly)))
        XCTAssertEqual(paper[3...].map { $0.map(\.description) }, [["b1", "b2"], ["b1", "b2"], ["b2", "b3"], ["b2", "b3"]])
        let savedSecondStage = zip(naive[3...], paper[3...]).map { $0.count - $1.count }.reduce(0, +)
        XCTAssertEqual(savedSecondStage, 6)
        let ours = blocksOnly(HopPlan(layout: layout, residual: .init(kind: .block, blocks: 4, cache: .crossStage)))
        XCTAssertEqual(ours[3...].map(\.count), [2, 1, 2, 1])
        XCTAssertEqual(zip(naive[3...], ours[3...]).map { $0.count - $1.count }.reduce(0, +), 8)
    }

    func testStandardCarriesOneHiddenState() {
        let plan = HopPlan(layout: Layout(ranks: 4, virtualStages: 2, layers: 16), residual: .init(kind: .standard, blocks: 0, cache: .crossStage))
        XCTAssertEqual(plan.tensors, Array(repeating: [.hidden], count: 7))
    }

    func testFullAttnResNeverShipsAPartial() {
        let plan = HopPlan(layout: Layout(ranks: 2, virtualStages: 2, layers: 10), residual: .init(kind: .full, blocks: 0, cache: .none))
        XCTAssertEqual(plan.tensors.last?.count, 1 + 7)  // b_0 … b_7 after layer 7
        XCTAssertTrue(plan.tensors.allSatisfy { $0.allSatisfy { $0.kind == .block } })
    }

    /// Independent check of the hop plan over random configurations: replay each rank's cache chunk by chunk
    /// and prove that every chunk has exactly the blocks its first layer attends over (nothing missing), that
    /// with the cross-stage cache no hop ships a block the receiver already holds, and that the partial travels
    /// exactly when the hop falls inside a block.
    func testEveryChunkGetsExactlyWhatItNeeds() {
        var rng = SplitMix(seed: 7)
        for _ in 0..<400 {
            let p = rng.int(1...6), v = rng.int(1...4)
            let layers = rng.int(p * v...(p * v * 3 + 5))
            let kind: ResidualKind = [.full, .block][rng.int(0...1)]
            let blocks = rng.int(1...layers)
            for cache in CachePolicy.allCases {
                let layout = Layout(ranks: p, virtualStages: v, layers: layers)
                let plan = HopPlan(layout: layout, residual: .init(kind: kind, blocks: blocks, cache: cache))
                let part = plan.partition!
                var rankHolds = [Set<Int>](repeating: [], count: p)
                for c in 0..<layout.chunks {
                    let r = layout.rank(ofChunk: c)
                    let first = layout.layers(ofChunk: c).lowerBound
                    let needed = Set(part.completedBlocks(afterLayer: first - 1))
                    let arriving = c == 0 ? [] : plan.tensors[c - 1]
                    let arrivingBlocks = Set(arriving.compactMap { role -> Int? in if case .block(let n) = role { return n }; return nil })
                    let have = c == 0 ? Set([0]) : rankHolds[r].union(arrivingBlocks)
                    let ctx = "p\(p) v\(v) L\(layers) \(kind) N\(blocks) \(cache) chunk \(c)"
                    XCTAssertTrue(needed.isSubset(of: have), "missing \(needed.subtracting(have)) at \(ctx)")
                    if cache == .crossStage {
                        XCTAssertTrue(arrivingBlocks.isDisjoint(with: rankHolds[r]), "redundant block at \(ctx)")
                    }
                    let partialArrives = arriving.contains { if case .partial = $0 { return true }; return false }
                    XCTAssertEqual(partialArrives, c > 0 && part.openPartial(afterLayer: first - 1) != nil, ctx)
                    // What the rank keeps after running chunk c, replayed from the policy's definition.
                    let produced = Set(part.completedBlocks(afterLayer: layout.layers(ofChunk: c).upperBound)).subtracting(needed)
                        .union(c == 0 ? [0] : [])
                    switch cache {
                    case .none: break
                    case .crossStage: rankHolds[r].formUnion(arrivingBlocks.union(produced))
                    case .receivedOnly: rankHolds[r].formUnion(arrivingBlocks.union(c == 0 ? [0] : []))
                    }
                    XCTAssertEqual(Set(plan.cachedBlocks(byChunk: c)).subtracting(rankHolds[r]), [], ctx)
                }
            }
        }
    }

    func testCachingNeverIncreasesTrafficAndNeedsVirtualStagesToHelp() {
        var rng = SplitMix(seed: 11)
        for _ in 0..<200 {
            let p = rng.int(2...6), v = rng.int(1...4)
            let layers = rng.int(p * v...(p * v * 4))
            let blocks = rng.int(1...layers)
            let layout = Layout(ranks: p, virtualStages: v, layers: layers)
            func total(_ cache: CachePolicy) -> Int {
                HopPlan(layout: layout, residual: .init(kind: .block, blocks: blocks, cache: cache)).tensors.map(\.count).reduce(0, +)
            }
            XCTAssertLessThanOrEqual(total(.crossStage), total(.receivedOnly))
            XCTAssertLessThanOrEqual(total(.receivedOnly), total(.none))
            if v == 1 { XCTAssertEqual(total(.crossStage), total(.none)) }
        }
    }
}

/// A small deterministic generator for property tests (SplitMix64).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ r: ClosedRange<Int>) -> Int { r.lowerBound + Int(next() % UInt64(r.count)) }
}

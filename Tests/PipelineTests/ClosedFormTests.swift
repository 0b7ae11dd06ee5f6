import XCTest
@testable import Pipeline

/// The closed forms of docs/traffic-model.md, checked against the exact hop plan whenever blocks align with
/// chunks, and the paper's Eq. 7 / Eq. 8 against our exact counts without b_0.
final class ClosedFormTests: XCTestCase {
    func testClosedFormsForAlignedBlocks() {
        for p in 2...6 {
            for v in 1...4 {
                for np in 1...3 {
                    for s in 1...3 {
                        let c = p * v, n = c * np, layers = n * s
                        let layout = Layout(ranks: p, virtualStages: v, layers: layers)
                        func plan(_ cache: CachePolicy) -> [Int] {
                            HopPlan(layout: layout, residual: .init(kind: .block, blocks: n, cache: cache)).tensors.map(\.count)
                        }
                        let ctx = "P\(p) V\(v) N_p\(np) S\(s)"
                        XCTAssertEqual(plan(.none).reduce(0, +), (c - 1) + np * c * (c - 1) / 2, ctx)
                        XCTAssertEqual(plan(.crossStage).reduce(0, +), (p - 1) + np * p * (p - 1) / 2 + (c - p) * (p - 1) * np, ctx)
                        XCTAssertEqual(plan(.receivedOnly).reduce(0, +), (p - 1) + np * p * (p - 1) / 2 + (c - p) * p * np, ctx)
                        XCTAssertEqual(plan(.none).max(), 1 + (c - 1) * np, ctx)
                        XCTAssertEqual(plan(.crossStage).max(), 1 + (p - 1) * np, ctx)
                        XCTAssertEqual(plan(.receivedOnly).max(), max(1 + (p - 1) * np, v > 1 ? p * np : 0), ctx)
                        let paper = PaperAccounting(layout: layout, residual: .block, blocks: n)
                        XCTAssertEqual(Double(paper.exactWithoutEmbedding[.none]!), paper.eq7Naive, ctx)
                        XCTAssertEqual(Double(paper.exactWithoutEmbedding[.receivedOnly]!), paper.eq8Cached, ctx)
                    }
                }
            }
        }
    }

    func testFigure3Accounting() {
        let a = PaperAccounting(layout: Layout(ranks: 4, virtualStages: 2, layers: 8), residual: .block, blocks: 4)
        XCTAssertEqual(a.eq7Naive, 14)
        XCTAssertEqual(a.eq8Cached, 11)
        XCTAssertEqual(a.laterVirtualStages[.none]! - a.laterVirtualStages[.receivedOnly]!, 6)
        XCTAssertEqual(a.laterVirtualStages[.none]! - a.laterVirtualStages[.crossStage]!, 8)
        XCTAssertEqual(a.partials, 4)
    }
}

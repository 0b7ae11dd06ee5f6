import XCTest
@testable import Model
@testable import Numerics
@testable import Pipeline

/// A backend of integers: each tensor is a number naming (role, microbatch, direction), so routing mistakes show,
/// and a switch to break one chunk's output on purpose.
struct LabelBackend: ChunkBackend {
    typealias Value = Int
    let plan: HopPlan
    /// (chunk, microbatch) whose forward leaves out its partial.
    var breakForward: (chunk: Int, microbatch: Int)?

    static func label(_ role: TensorRole, _ m: Int, backward: Bool) -> Int {
        let code: Int
        switch role {
        case .hidden: code = 1
        case .block(let n): code = 100 + n
        case .partial(let n, let i): code = 10_000 + 100 * n + i
        }
        return (backward ? -1 : 1) * (code * 1000 + m)
    }

    mutating func forward(chunk c: Int, microbatch m: Int, input: HopValues<Int>?) throws -> HopValues<Int>? {
        if let input {
            for role in plan.inputRoles(ofChunk: c) { XCTAssertEqual(input[role], Self.label(role, m, backward: false), "\(role) into chunk \(c)") }
        }
        guard c < plan.layout.chunks - 1 else { return nil }
        var out = HopValues<Int>()
        for role in plan.outputRoles(ofChunk: c) {
            switch role {
            case .hidden: out.hidden = Self.label(role, m, backward: false)
            case .block: out.blocks.append(Self.label(role, m, backward: false))
            case .partial: out.partial = Self.label(role, m, backward: false)
            }
        }
        if let b = breakForward, b == (c, m) { out.partial = nil }
        return out
    }

    mutating func backward(chunk c: Int, microbatch m: Int, gradOutput: HopValues<Int>?) throws -> HopValues<Int>? {
        guard c > 0 else { return nil }
        let roles = plan.inputRoles(ofChunk: c)
        return HopValues(roles: roles, values: roles.map { Self.label($0, m, backward: true) })
    }

    func zeroGradient(_ role: TensorRole, microbatch m: Int, hop: Int) -> Int { Self.label(role, m, backward: true) }
    func accumulate(_ sum: inout Int, _ contribution: Int, role: TensorRole, microbatch m: Int) throws {
        XCTAssertEqual(contribution, Self.label(role, m, backward: true), "a deposit for \(role) in the wrong slot")
    }
    func byteCount(_ value: Int) -> Int { 8 }
}

final class RankExecutorTests: XCTestCase {
    func pipeline(ranks: Int = 2, virtual: Int = 3, layers: Int = 12, blocks: Int = 6, cache: CachePolicy = .crossStage)
        throws -> (HopPlan, Schedule) {
        let layout = Layout(ranks: ranks, virtualStages: virtual, layers: layers)
        let plan = HopPlan(layout: layout, residual: ResidualConfig(kind: .block, blocks: blocks, cache: cache))
        return (plan, try Schedule(kind: virtual > 1 ? .interleaved1F1B : .oneFOneB, layout: layout, microbatches: 4))
    }

    /// With V = 3 two later chunks of a rank read the same cached block: their gradients share one deposit slot,
    /// opened once and collected once (the books balance by construction).
    func testTwoReadersOfACachedBlockShareOneDepositSlot() throws {
        let (plan, schedule) = try pipeline()
        var executors = (0..<2).map { RankExecutor(rank: $0, plan: plan, schedule: schedule, backend: LabelBackend(plan: plan)) }
        let network = InMemoryNetwork<Int>(layout: plan.layout) { _ in 8 }
        try InMemoryCluster.runStep(&executors, network: network, step: 0)
        // Rank 0 produces b0 in chunk 0 and chunks 2 and 4 both read it from the cache: one slot per microbatch.
        XCTAssertEqual(executors[0].cache.slotsOpened, executors[0].cache.slotsCollected)
        XCTAssertGreaterThan(executors[0].cache.slotsOpened, 0)
        var deposits = 0
        for c in plan.layout.chunks(onRank: 0) where c > 0 {
            let wire = Set(plan.tensors[c - 1])
            deposits += plan.inputRoles(ofChunk: c).filter { !wire.contains($0) }.count
        }
        XCTAssertGreaterThan(deposits * 4, executors[0].cache.slotsOpened, "several deposits went into one slot")
        XCTAssertTrue(network.pending.isEmpty)
    }

    /// A violated invariant names the rank, the action and the invariant, and marks the failing slot of the grid.
    func testAViolatedInvariantNamesRankActionAndMarksTheGrid() throws {
        let (plan, schedule) = try pipeline(blocks: 4)  // S = 3: chunk 3 (layers 7–8) ends inside block 3
        guard case .partial? = plan.tensors[3].last else { return XCTFail("hop 3 should carry a partial: \(plan.tensors[3])") }
        var broken = LabelBackend(plan: plan)
        broken.breakForward = (chunk: 3, microbatch: 1)
        var executors = [RankExecutor(rank: 0, plan: plan, schedule: schedule, backend: LabelBackend(plan: plan)),
                         RankExecutor(rank: 1, plan: plan, schedule: schedule, backend: broken)]
        let network = InMemoryNetwork<Int>(layout: plan.layout) { _ in 8 }
        XCTAssertThrowsError(try InMemoryCluster.runStep(&executors, network: network, step: 0)) { error in
            guard let e = error as? ExecutorError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.rank, 1)
            XCTAssertEqual(e.action, .forward(chunk: 3, microbatch: 1))
            guard case .backendProduced(let role, microbatch: 1)? = e.invariant else { return XCTFail("\(e.cause)") }
            XCTAssertEqual(role, plan.tensors[3].last)
            let text = "\(e)"
            XCTAssertTrue(text.contains("rank 1, action 3F1"), text)
            let marked = text.split(separator: "\n").filter { $0.contains("<-- ERROR HERE") }
            XCTAssertEqual(marked.count, 1, text)
            XCTAssertTrue(marked[0].hasPrefix("1 "), "the mark is on rank 1's row: \(text)")
            XCTAssertTrue(marked[0].contains("*3F1"), text)
        }
    }

    /// A NaN loss stops the rank with the step (1-based, as `attnres train` counts) and the microbatch.
    func testNaNLossIsReportedWithStepAndMicrobatch() throws {
        let model = ModelConfig(layers: 4, hidden: 8, heads: 2, seq: 3, vocab: 16, residual: .block, blocks: 2)
        let layout = Layout(ranks: 2, virtualStages: 1, layers: 4)
        let plan = HopPlan(layout: layout, residual: ResidualConfig(kind: .block, blocks: 2, cache: .none))
        let schedule = try Schedule(kind: .oneFOneB, layout: layout, microbatches: 3)
        var executors = try (0..<2).map {
            RankExecutor(rank: $0, plan: plan, schedule: schedule,
                         backend: try ComputeBackend(config: model, layout: layout, rank: $0, microbatches: 3, microbatchSize: 1,
                                                     seed: 1, learningRate: 1e-2))
        }
        var poisoned = executors[1].backend.parameters
        poisoned[1]!.modify("head.weight") { $0.data[0] = .nan }
        executors[1].backend.restore(parameters: poisoned, optimizers: executors[1].backend.optimizers)
        for r in 0..<2 { executors[r].backend.begin(globalStep: 7) }
        let network = InMemoryNetwork<Tensor>(layout: layout) { $0.count * 4 }
        XCTAssertThrowsError(try InMemoryCluster.runStep(&executors, network: network, step: 0)) { error in
            XCTAssertTrue("\(error)".contains("loss is NaN at step 7 (microbatch 0)"), "\(error)")
            XCTAssertEqual((error as? ExecutorError)?.action, .forward(chunk: 1, microbatch: 0))
        }
    }
}

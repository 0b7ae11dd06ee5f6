import XCTest
@testable import Pipeline

/// Interleaved 1F1B for every microbatch count Megatron-LM or torch.distributed.pipelining accepts: the accepted
/// counts as each implementation's checks define them, and each rank's compute order equal to the order their code
/// produces, re-derived here step by step from their loops (docs/schedules.md).
final class InterleavedRuleTests: XCTestCase {
    /// Megatron-LM `forward_backward_pipelining_with_interleaving`, as its loops run: the schedule table, warm-up
    /// `get_pp_rank_microbatches`, then `num_microbatches_remaining` steady 1F1B iterations, then the cool-down
    /// backwards; `get_model_chunk_id(k, forward)` and `get_microbatch_id_in_model_chunk(k, forward)` read the table.
    static func megatronReference(p: Int, v: Int, m: Int, n: Int, rank: Int) -> [String] {
        var table: [(mb: Int, chunk: Int)] = []
        var minID = 0
        while minID < m {
            let ids = minID + n >= m ? Array(minID..<m) : Array(minID..<(minID + n))
            for chunk in 0..<v { for mb in ids { table.append((mb, chunk)) } }
            minID += n
        }
        let total = m * v
        var warmup = (p - rank - 1) * 2 + (v - 1) * n
        if warmup >= total { warmup = total }
        let remaining = total - warmup
        func chunkID(_ k: Int, _ forward: Bool) -> Int { forward ? table[k % total].chunk : v - table[k % total].chunk - 1 }
        func f(_ k: Int) -> String { "\(chunkID(k, true) * p + rank)F\(table[k].mb)" }
        func b(_ k: Int) -> String { "\(chunkID(k, false) * p + rank)B\(table[k].mb)" }
        var out: [String] = []
        for k in 0..<warmup { out.append(f(k)) }
        for k in 0..<remaining { out.append(f(k + warmup)); out.append(b(k)) }
        for k in remaining..<total { out.append(b(k)) }
        return out
    }

    /// torch `ScheduleInterleaved1F1B._calculate_single_rank_operations` + `_get_1f1b_rank_ops`, without the
    /// `None` padding (slots, not actions): ops 0 ..< warm-up + 1F1B + cool-down, each stage's microbatch counter.
    static func torchReference(p: Int, v: Int, m: Int, rank: Int) -> [String] {
        let rounds = max(1, m / p), mpr = m / rounds
        let warmup = min((v - 1) * mpr + 2 * ((p - 1) - rank), m * v)
        let fwdBwd = m * v - warmup, cooldown = m * v - fwdBwd
        func forwardStage(_ step: Int) -> Int { ((step / mpr) % v) * p + rank }
        func backwardStage(_ step: Int) -> Int { (v - 1 - ((step - warmup) / mpr) % v) * p + rank }
        var fwdMB: [Int: Int] = [:], bwdMB: [Int: Int] = [:]
        var out: [String] = []
        for op in 0..<(warmup + fwdBwd + cooldown) {
            if op < warmup + fwdBwd {
                let s = forwardStage(op)
                out.append("\(s)F\(fwdMB[s, default: 0])"); fwdMB[s, default: 0] += 1
            }
            if op >= warmup {
                let s = backwardStage(op)
                out.append("\(s)B\(bwdMB[s, default: 0])"); bwdMB[s, default: 0] += 1
            }
        }
        return out
    }

    func testAcceptedCountsFollowEachImplementationsChecks() {
        // torch: rounds = max(1, m // 4) must divide m.
        let torch = InterleavedRule(.interleaved1F1BTorch, ranks: 4)
        XCTAssertEqual((1...20).filter(torch.accepts), [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 16, 20])
        // Megatron, N = P = 4: multiples of 4 only; N = 5: 4 ≤ 5 ≤ m, m % 5 ∈ {0, 4}.
        XCTAssertEqual((1...20).filter(InterleavedRule(.interleaved1F1B, ranks: 4).accepts), [4, 8, 12, 16, 20])
        XCTAssertEqual((1...20).filter(InterleavedRule(.interleaved1F1B, ranks: 4, group: 5).accepts), [5, 9, 10, 14, 15, 19, 20])
        XCTAssertEqual((1...20).filter(InterleavedRule(.interleaved1F1B, ranks: 4, group: 3).accepts), [], "N < P")
    }

    /// Every accepted (P, V, m, N) up to a size: each rank's compute order equals the reference, every schedule runs
    /// to completion without a deadlock in the slot simulation, and the grid prints and parses back.
    func testOrdersEqualTheImplementationsLoops() throws {
        var megatronCases = 0, torchCases = 0, offMultiple = 0
        for p in 2...5 {
            for v in 2...3 {
                let layout = Layout(ranks: p, virtualStages: v, layers: p * v)
                for m in 1...(4 * p + 3) {
                    for n in [nil] + Array(p...(p + 3)) where InterleavedRule(.interleaved1F1B, ranks: p, group: n).accepts(m) {
                        let s = try Schedule(kind: .interleaved1F1B, layout: layout, microbatches: m, microbatchGroup: n)
                        for r in 0..<p {
                            XCTAssertEqual(s.actions[r].filter(\.isCompute).map(\.description),
                                           Self.megatronReference(p: p, v: v, m: m, n: n ?? p, rank: r), "megatron p\(p) v\(v) m\(m) n\(n ?? p) r\(r)")
                        }
                        try check(s)
                        megatronCases += 1
                        if m % p != 0 { offMultiple += 1 }
                    }
                    guard InterleavedRule(.interleaved1F1BTorch, ranks: p).accepts(m) else {
                        XCTAssertThrowsError(try Schedule(kind: .interleaved1F1BTorch, layout: layout, microbatches: m))
                        continue
                    }
                    let s = try Schedule(kind: .interleaved1F1BTorch, layout: layout, microbatches: m)
                    for r in 0..<p {
                        XCTAssertEqual(s.actions[r].filter(\.isCompute).map(\.description),
                                       Self.torchReference(p: p, v: v, m: m, rank: r), "torch p\(p) v\(v) m\(m) r\(r)")
                    }
                    try check(s)
                    torchCases += 1
                    if m % p != 0 { offMultiple += 1 }
                }
            }
        }
        XCTAssertGreaterThan(offMultiple, 100, "counts that are not multiples of the ranks are covered")
        print("interleaved orders checked: \(megatronCases) Megatron, \(torchCases) torch, \(offMultiple) with m % P ≠ 0")
    }

    /// With m a multiple of P and N = P the two rules give the same order.
    func testRulesAgreeOnMultiplesOfRanks() throws {
        for (p, v, m) in [(2, 2, 4), (4, 2, 8), (3, 3, 9), (4, 3, 12)] {
            let layout = Layout(ranks: p, virtualStages: v, layers: p * v)
            XCTAssertEqual(try Schedule(kind: .interleaved1F1B, layout: layout, microbatches: m).actions,
                           try Schedule(kind: .interleaved1F1BTorch, layout: layout, microbatches: m).actions, "p\(p) v\(v) m\(m)")
        }
    }

    /// Every forward and backward of every chunk and microbatch appears exactly once; the simulation completes.
    func check(_ s: Schedule, file: StaticString = #filePath, line: UInt = #line) throws {
        let computes = s.actions.flatMap { $0.filter(\.isCompute).map(\.description) }
        XCTAssertEqual(computes.count, 2 * s.layout.chunks * s.microbatches, file: file, line: line)
        XCTAssertEqual(Set(computes).count, computes.count, file: file, line: line)
        let sim = try ScheduleSimulation(s)
        XCTAssertEqual(sim.slots.map(\.count).reduce(0, +), computes.count, file: file, line: line)
        let rebuilt = Schedule(kind: s.kind, layout: s.layout, microbatches: s.microbatches, microbatchGroup: s.microbatchGroup,
                               computeOrder: try ScheduleGrid.parse(try s.grid()))
        XCTAssertEqual(rebuilt.actions, s.actions, file: file, line: line)
    }
}

import XCTest
import Model
@testable import Pipeline

final class StepTimeSimulationTests: XCTestCase {
    private func costs(_ layout: Layout, f: Double, b: Double, link: LinkCost = .free, bytes: Int = 0) -> StepCosts {
        StepCosts(forward: Array(repeating: f, count: layout.chunks), backward: Array(repeating: b, count: layout.chunks),
                  hopBytes: Array(repeating: bytes, count: layout.hops), defaultLink: link)
    }

    /// Unit compute and free links are `ScheduleSimulation`'s model: the same makespan, the same per-rank bubble and
    /// the same slot for every compute action, for every schedule we can afford.
    func testUnitTimeFreeLinksReproduceScheduleSimulation() throws {
        var checked = 0
        for p in 1...6 {
            for v in 1...3 {
                for m in [1, 2, 3, 4, 6, 8, 9] {
                    for kind in ScheduleKind.allCases {
                        let layout = Layout(ranks: p, virtualStages: v, layers: p * v)
                        guard (try? Schedule.validate(kind, layout: layout, microbatches: m)) != nil else { continue }
                        let s = try Schedule(kind: kind, layout: layout, microbatches: m)
                        let reference = try ScheduleSimulation(s)
                        let timed = try StepTimeSimulation(s, costs: .unit(layout))
                        XCTAssertEqual(timed.stepSeconds, Double(reference.makespan), "\(kind) p\(p) v\(v) m\(m)")
                        XCTAssertEqual(timed.bubble, reference.bubbleFractionPerRank, "\(kind) p\(p) v\(v) m\(m)")
                        let slots = Dictionary(uniqueKeysWithValues: reference.slots.flatMap { $0 }.map { ($0.action, Double($0.slot)) })
                        for span in timed.spans! { XCTAssertEqual(span.start, slots[span.action], "\(span.action) \(kind) p\(p) v\(v) m\(m)") }
                        XCTAssertTrue(timed.exposedComm.allSatisfy { $0.seconds == 0 })
                        checked += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 100)
    }

    /// GPipe and 1F1B with forward f and backward b on every rank, free links: (m + P − 1)(f + b), bubble
    /// (P − 1)/(m + P − 1) on every rank (Narayanan et al. 2021 §2.2), whatever f and b are.
    func testGPipeAndOneFOneBClosedForm() throws {
        for p in 2...5 {
            for m in [1, 3, 8] {
                for kind in [ScheduleKind.gpipe, .oneFOneB] {
                    let layout = Layout(ranks: p, virtualStages: 1, layers: p)
                    let sim = try StepTimeSimulation(try Schedule(kind: kind, layout: layout, microbatches: m), costs: costs(layout, f: 0.003, b: 0.007))
                    XCTAssertEqual(sim.stepSeconds, Double(m + p - 1) * 0.010, accuracy: 1e-12, "\(kind) p\(p) m\(m)")
                    for bubble in sim.bubble { XCTAssertEqual(bubble, Double(p - 1) / Double(m + p - 1), accuracy: 1e-12) }
                }
            }
        }
    }

    /// Two ranks, GPipe, m = 3, f = 2, b = 3, latency 0.5, no bandwidth term: forwards reach rank 1 at 2.5, 4.5,
    /// 6.5; rank 1 runs F0 2.5–4.5, F1 4.5–6.5, F2 6.5–8.5, then B0 8.5–11.5, B1 –14.5, B2 –17.5; rank 0's
    /// gradients arrive at 12, 15, 18, so its backwards end at 15, 18, 21.
    func testTwoRankGPipeByHand() throws {
        let layout = Layout(ranks: 2, virtualStages: 1, layers: 2)
        let s = try Schedule(kind: .gpipe, layout: layout, microbatches: 3)
        let sim = try StepTimeSimulation(s, costs: costs(layout, f: 2, b: 3, link: LinkCost(latency: 0.5, bandwidth: .infinity)))
        XCTAssertEqual(sim.stepSeconds, 21)
        XCTAssertEqual(sim.busySeconds, [15, 15])
        XCTAssertEqual(sim.waitSeconds, [12 - 6, 2.5])  // rank 0 idles 6–12; rank 1 until 2.5
        // Rank 0 waited 6 s for the first gradient, of which 0.5 s while it was in flight; rank 1 0.5 s.
        let exposed = Dictionary(uniqueKeysWithValues: sim.exposedComm.map { ("\($0.src)→\($0.dst) \($0.direction)", $0.seconds) })
        XCTAssertEqual(exposed["0→1 forward"], 0.5)
        XCTAssertEqual(exposed["1→0 backward"], 0.5)
        let path = sim.criticalPath!
        // Critical path: F0 on rank 0, its transfer, F0…F2 and B0 on rank 1, B0's gradient, B0…B2 on rank 0.
        XCTAssertEqual(path.count, 10, "\(path)")
        if case .compute(let last) = path.last! { XCTAssertEqual(last.action, .backward(chunk: 0, microbatch: 2)) } else { XCTFail() }
        XCTAssertEqual(sim.criticalPathSplit!.communication, 1.0, accuracy: 1e-12)
    }

    /// A link slower than compute (transfer τ ≥ f, b) paces the pipeline: two-rank GPipe takes 2(f + b) + 2mτ, so
    /// the bubble grows to 1 − m(f + b) / (2(f + b) + 2mτ) as τ grows.
    func testSlowLinkGrowsTheBubbleAsTheFormulaSays() throws {
        let layout = Layout(ranks: 2, virtualStages: 1, layers: 2)
        let f = 1.0, b = 2.0, m = 5
        var last = 0.0
        for tau in [2.0, 3.0, 5.0, 8.0] {
            let s = try Schedule(kind: .gpipe, layout: layout, microbatches: m)
            // 1,000 bytes at 1000/τ bytes per second take τ seconds.
            let sim = try StepTimeSimulation(s, costs: costs(layout, f: f, b: b, link: LinkCost(latency: 0, bandwidth: 1000 / tau), bytes: 1000))
            let expected = 2 * (f + b) + 2 * Double(m) * tau
            XCTAssertEqual(sim.stepSeconds, expected, accuracy: 1e-9, "τ = \(tau)")
            for bubble in sim.bubble { XCTAssertEqual(bubble, 1 - Double(m) * (f + b) / expected, accuracy: 1e-9) }
            XCTAssertGreaterThan(sim.bubble[0], last)
            last = sim.bubble[0]
            XCTAssertGreaterThan(sim.exposedComm.map(\.seconds).reduce(0, +), 0)
        }
    }

    /// One transfer at a time per link direction, shared by forward and backward messages that go the same way
    /// (two ranks, V = 2: rank 0 → 1 carries hop 0 and 2 forward and hop 1 backward).
    func testMessagesQueueOnTheirLink() throws {
        let layout = Layout(ranks: 2, virtualStages: 2, layers: 4)
        let s = try Schedule(kind: .interleaved1F1B, layout: layout, microbatches: 2)
        let sim = try StepTimeSimulation(s, costs: costs(layout, f: 1, b: 1, link: LinkCost(latency: 0, bandwidth: 1), bytes: 3))
        var byLink: [String: [StepTimeSimulation.Message]] = [:]
        for msg in sim.messages! { byLink["\(msg.src)→\(msg.dst)", default: []].append(msg) }
        for (link, list) in byLink {
            let ordered = list.sorted { $0.onLink < $1.onLink }
            for (a, b) in zip(ordered, ordered.dropFirst()) { XCTAssertGreaterThanOrEqual(b.onLink, a.onLink + 3, "\(link): transfers overlap") }
            for msg in list { XCTAssertEqual(msg.arrived, msg.onLink + 3); XCTAssertGreaterThanOrEqual(msg.onLink, msg.sent) }
        }
        XCTAssertTrue(byLink["0→1"]!.contains { $0.key.direction == .backward } && byLink["0→1"]!.contains { $0.key.direction == .forward })
    }

    /// The critical path is a gap-free chain from 0 to the end of the pipeline.
    func testCriticalPathIsContiguous() throws {
        let layout = Layout(ranks: 4, virtualStages: 2, layers: 8)
        let s = try Schedule(kind: .interleaved1F1B, layout: layout, microbatches: 8)
        var c = costs(layout, f: 1, b: 2, link: LinkCost(latency: 0.3, bandwidth: 10), bytes: 4)
        c.forward[7] = 3
        let sim = try StepTimeSimulation(s, costs: c)
        var t = 0.0
        for item in sim.criticalPath! {
            switch item {
            case .compute(let span): XCTAssertEqual(span.start, t, accuracy: 1e-9, "\(span)"); t = span.end
            case .transfer(let m): XCTAssertLessThanOrEqual(m.sent, t + 1e-9); t = m.arrived
            }
        }
        XCTAssertEqual(t, sim.pipelineSeconds, accuracy: 1e-9)
    }

    func testDeadlockAndMismatchAreErrors() throws {
        let layout = Layout(ranks: 2, virtualStages: 1, layers: 2)
        let bad = Schedule(kind: .oneFOneB, layout: layout, microbatches: 1, computeOrder: [
            [.backward(chunk: 0, microbatch: 0), .forward(chunk: 0, microbatch: 0)],
            [.forward(chunk: 1, microbatch: 0), .backward(chunk: 1, microbatch: 0)],
        ])
        XCTAssertThrowsError(try StepTimeSimulation(bad, costs: .unit(layout))) { XCTAssertTrue("\($0)".contains("rank 0 waits at 0RB0"), "\($0)") }
        let good = try Schedule(kind: .gpipe, layout: layout, microbatches: 1)
        var wrong = StepCosts.unit(layout)
        wrong.forward = [1]
        XCTAssertThrowsError(try StepTimeSimulation(good, costs: wrong)) { XCTAssertTrue("\($0)".contains("1 forward"), "\($0)") }
    }

    /// The analytical work: depth sources per layer as the model reads them, and FLOPs of a one-layer-pair chunk by
    /// hand (T = 4, d = 8, s = 2, b = 2, H = 2, vocab 16).
    func testChunkWorkByHand() throws {
        let partition = BlockPartition(layers: 8, blocks: 2)
        XCTAssertEqual((1...8).map { ChunkWork.depthSources(layer: $0, partition: partition) }, [1, 2, 2, 2, 2, 3, 3, 3])
        let full = BlockPartition(layers: 4, blocks: 4)
        XCTAssertEqual((1...4).map { ChunkWork.depthSources(layer: $0, partition: full) }, [1, 2, 3, 4])
        let config = ModelConfig(layers: 4, hidden: 8, heads: 2, seq: 2, vocab: 16, residual: .standard, blocks: 4)
        let w = ChunkWork(model: config, layout: Layout(ranks: 2, virtualStages: 1, layers: 4), microbatchSize: 2)
        let t = 4.0, d = 8.0
        let attention = 4 * t * d + 8 * t * d * d + 4 * 2 * 2 * 2 * d + 2.5 * 2 * 2 * 2 * 2
        let mlp = 4 * t * d + 16 * t * d * d + 32 * t * d
        XCTAssertEqual(w.forward[0].flops, t * d + attention + mlp + 2 * t * d)
        XCTAssertEqual(w.forward[1].flops, attention + mlp + 2 * t * d + 4 * t * d + 2 * t * d * 16 + 5 * t * 16)
        XCTAssertEqual(w.backward[1].flops, 2 * w.forward[1].flops)
        // The parts calibration fits apart: no depth attention in a standard model; the head on the last chunk, the
        // embedding on the first; the state tensors each chunk takes in and hands on.
        XCTAssertEqual(w.forwardDepth, [.zero, .zero])
        XCTAssertEqual(w.forwardHead[0], .zero); XCTAssertEqual(w.forwardHead[1].flops, 4 * t * d + 2 * t * d * 16 + 5 * t * 16)
        XCTAssertEqual(w.forwardEmbedding[0].flops, t * d); XCTAssertEqual(w.forwardEmbedding[1], .zero)
        XCTAssertEqual(w.stateTensors, [1, 1])
        // Block(2) over 4 layers on 2 chunks: chunk 0 reads b_0 (the key norm once), layer 1 attends over [b_0], layer 2
        // over [b_0, partial]; chunk 1 reads b_0, b_1 (two key norms), layers 3 and 4 over [b_0, b_1] and [b_0, b_1,
        // partial]; the output attention over the N + 1 = 3 blocks.
        let blockConfig = ModelConfig(layers: 4, hidden: 8, heads: 2, seq: 2, vocab: 16, residual: .block, blocks: 2)
        let bw = ChunkWork(model: blockConfig, layout: Layout(ranks: 2, virtualStages: 1, layers: 4), microbatchSize: 2)
        func layerDepth(_ n: Double, partial: Bool) -> Double { 4 * n * t * d + 5 * n * t + (partial ? 3 * t * d : 0) }
        XCTAssertEqual(bw.forwardDepth[0].flops, 3 * t * d + layerDepth(1, partial: false) + layerDepth(2, partial: true))
        XCTAssertEqual(bw.forwardDepth[1].flops, 2 * 3 * t * d + layerDepth(2, partial: false) + layerDepth(3, partial: true)
                       + 4 * 3 * t * d + 5 * 3 * t)
        XCTAssertEqual(bw.forwardDepth[1].kernels, 2 + (2 + 2) + (2 + 3) + (3 + 3))
        XCTAssertEqual(bw.backwardDepth[1], 2 * bw.forwardDepth[1])
        // chunk 0 hands on [b_0, b_1] (layer 2 completes block 1); chunk 1 takes those 2 in.
        XCTAssertEqual(bw.stateTensors, [2, 2])
        // The residual adds stay in the layers' part: the depth parts leave exactly one add per layer outside.
        XCTAssertEqual((bw.forward[0] - bw.forwardDepth[0] - bw.forwardEmbedding[0]).flops, attention + mlp + 2 * t * d)
        // Block AttnRes costs more than standard; full more than block; two-phase moves fewer bytes than one-pass.
        func total(_ r: ResidualKind, twoPhase: Bool = false) -> Work {
            ChunkWork(model: ModelConfig(layers: 16, hidden: 32, heads: 2, seq: 8, vocab: 16, residual: r, blocks: r == .block ? 4 : 16),
                      layout: Layout(ranks: 2, virtualStages: 2, layers: 16), microbatchSize: 2, twoPhase: twoPhase).forward.reduce(.zero, +)
        }
        XCTAssertLessThan(total(.standard).flops, total(.block).flops)
        XCTAssertLessThan(total(.block).flops, total(.full).flops)
        XCTAssertLessThan(total(.block, twoPhase: true).bytes, total(.block).bytes)
    }

    func testNonNegativeLeastSquaresRecoversAnExactFit() {
        let rows: [[Double]] = [[1, 2, 1], [2, 1, 1], [3, 5, 1], [4, 4, 1], [7, 1, 1]]
        let x = [0.5, 0.0, 2.0]
        let y = rows.map { zip($0, x).reduce(0) { $0 + $1.0 * $1.1 } }
        let fit = CalibrationMath.nonNegativeLeastSquares(rows, y)
        for (a, b) in zip(fit, x) { XCTAssertEqual(a, b, accuracy: 1e-6) }
        // A negative coefficient is not allowed: the fit clamps it to zero.
        let yNeg = rows.map { 2 * $0[0] - 1 * $0[1] }
        XCTAssertTrue(CalibrationMath.nonNegativeLeastSquares(rows, yNeg).allSatisfy { $0 >= 0 })
    }
}

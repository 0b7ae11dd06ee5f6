import Foundation
import XCTest
@testable import Cluster
@testable import Model
@testable import Numerics
@testable import Pipeline
@testable import Wire

/// Every rank's executor in one process over the in-memory channel, on random configurations: compute mode must
/// train exactly the single-process model, and both modes must move exactly the bytes `attnres predict` says.
final class ExecutorPropertyTests: XCTestCase {
    /// A random pipeline with a tiny model: ranks ≤ 6, virtual ≤ 4, layers from P·V up, any blocks (so block
    /// boundaries fall inside chunks and partials travel), every schedule the layout allows, residual and cache.
    static func randomPipeline(_ rng: inout Rng) -> Topology {
        var t = Topology()
        t.name = "random"
        t.ranks = rng.int(2...6)
        t.virtualStages = rng.int(1...4)
        let chunks = t.ranks * t.virtualStages
        t.layers = rng.int(chunks...(chunks + 4))
        t.residual = [.standard, .full, .block][rng.int(0...2)]
        t.blocks = rng.int(1...t.layers)
        t.cache = CachePolicy.allCases[rng.int(0...2)]
        t.schedule = t.virtualStages > 1 ? .interleaved1F1B : [.gpipe, .oneFOneB][rng.int(0...1)]
        t.microbatches = t.virtualStages > 1 ? t.ranks * rng.int(1...2) : rng.int(1...6)
        t.microbatchSize = rng.int(1...2)
        t.seq = rng.int(1...3)
        t.hidden = 8
        t.heads = 2
        t.vocab = 16
        t.steps = 2
        t.seed = rng.int(1...1000)
        t.learningRate = 1e-2
        return t
    }

    /// Largest |a − b| over the tensor, relative to the reference's largest magnitude.
    static func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
        let scale = max(b.map(abs).max() ?? 0, 1e-30)
        return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
    }

    func testComputeModeEqualsTheSingleProcessModelOnRandomConfigs() throws {
        var rng = Rng(state: 7_2026)
        let configs = 320
        var worstLoss: Float = 0, worstParameter: Float = 0, worstGradient: Float = 0
        var parametersCompared = 0, parametersApart = 0
        var withPartials = 0, byCache: [CachePolicy: Int] = [:], byVirtual: [Int: Int] = [:]
        let started = Date()
        for i in 0..<configs {
            let t = Self.randomPipeline(&rng)
            try t.validate()
            let what = "config \(i): \(Report.describe(t)) seed \(t.seed)"
            let model = t.modelConfig
            let plan = HopPlan(layout: t.layout, residual: t.residualConfig)
            let schedule = try Schedule(kind: t.schedule, layout: t.layout, microbatches: t.microbatches)
            let run = try InMemoryTraining.run(model: model, plan: plan, schedule: schedule, microbatchSize: t.microbatchSize,
                                               seed: UInt64(t.seed), learningRate: t.learningRate, steps: t.steps)

            let config = TrainConfig(model: model, microbatches: t.microbatches, microbatchSize: t.microbatchSize,
                                     steps: t.steps, seed: UInt64(t.seed), learningRate: t.learningRate)
            var reference = try Trainer(config: config, data: BatchSource.synthetic(seq: t.seq, vocab: t.vocab, seed: UInt64(t.seed)))
            let referenceGradients = reference.lossAndGradients(step: 1).1
            let losses = (0..<t.steps).map { _ in reference.step().loss }
            let cached = t.cache != .none && t.residual != .standard && t.virtualStages > 1
            if cached {
                for (a, b) in zip(run.losses, losses) {
                    let d = abs(a - b) / abs(b)
                    worstLoss = max(worstLoss, d)
                    XCTAssertLessThanOrEqual(d, 1e-6, "\(what): losses \(run.losses) vs \(losses)")
                }
            } else {
                XCTAssertEqual(run.losses, losses, "\(what): bitwise without the cache")
            }
            XCTAssertEqual(Set(run.parameters.names), Set(reference.parameters.names), what)
            for n in referenceGradients.names {
                let a = run.firstGradients[n].data, b = referenceGradients[n].data
                if cached {
                    let d = Self.relativeDifference(a, b)
                    worstGradient = max(worstGradient, d)
                    XCTAssertLessThanOrEqual(d, 1e-4, "\(what): gradient of \(n)")
                } else {
                    XCTAssertEqual(a, b, "\(what): gradient of \(n) bitwise without the cache")
                }
            }
            for n in reference.parameters.names {
                let a = run.parameters[n].data, b = reference.parameters[n].data
                if cached {
                    // AdamW's early updates are sign-like (m̂/√v̂ = ±1 at step 1), so an element whose gradient is
                    // rounding noise moves by about ±lr in either run: bound each element by Adam's step bound, and
                    // count the elements further apart than 1e-6 of the tensor's scale (reported).
                    let scale = max(b.map(abs).max() ?? 0, 1e-30)
                    for (x, y) in zip(a, b) {
                        XCTAssertLessThanOrEqual(abs(x - y), 2 * t.learningRate * Float(t.steps), "\(what): parameter \(n)")
                        if abs(x - y) > 1e-6 * scale { parametersApart += 1 }
                    }
                    parametersCompared += a.count
                    worstParameter = max(worstParameter, Self.relativeDifference(a, b))
                } else {
                    XCTAssertEqual(a, b, "\(what): parameter \(n) bitwise without the cache")
                }
            }

            let prediction = try TrafficPrediction(t.trafficConfig)
            XCTAssertEqual(run.links, prediction.links.mapValues { $0 * t.steps }, "\(what): bytes per link")
            XCTAssertEqual(run.tensorsPerHop, prediction.tensorsPerHop, what)
            XCTAssertEqual(run.peakCachedBytes, prediction.peakCachedBytes, "\(what): cache peaks")
            XCTAssertEqual(run.depositSlots.opened, run.depositSlots.collected, what)

            if plan.tensors.contains(where: { $0.contains { $0.kind == .partial } }) { withPartials += 1 }
            byCache[t.cache, default: 0] += 1
            byVirtual[t.virtualStages, default: 0] += 1
        }
        // The sample must cover what the claim is about, or the test proves less than it says.
        XCTAssertGreaterThan(withPartials, configs / 10, "configs whose hops carry partials")
        for p in CachePolicy.allCases { XCTAssertGreaterThan(byCache[p] ?? 0, configs / 5, "configs with cache \(p)") }
        for v in 1...4 { XCTAssertGreaterThan(byVirtual[v] ?? 0, configs / 8, "configs with V = \(v)") }
        print("executor property test: \(configs) configs (\(withPartials) with partials) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s; worst relative difference with the cache: loss \(worstLoss), first-step gradients \(worstGradient), parameters \(worstParameter) (\(parametersApart) of \(parametersCompared) cached-run parameter elements further apart than 1e-6 of their tensor's scale)")
        XCTAssertLessThan(parametersApart * 100, parametersCompared, "most parameters agree to 1e-6 even with the cache")
    }

    /// Shape mode over the same executor: tags checked on every tensor a chunk reads (wire and cache) and on every
    /// deposit; bytes, tensors per hop and cache peaks equal the prediction.
    func testShapeModeMovesThePredictedBytesOnRandomConfigs() throws {
        var rng = Rng(state: 11_2026)
        for i in 0..<300 {
            var t = Self.randomPipeline(&rng)
            t.hidden = 4 * rng.int(1...4)
            try t.validate()
            let what = "config \(i): \(Report.describe(t))"
            let plan = HopPlan(layout: t.layout, residual: t.residualConfig)
            let schedule = try Schedule(kind: t.schedule, layout: t.layout, microbatches: t.microbatches)
            var executors = (0..<t.ranks).map {
                RankExecutor(rank: $0, plan: plan, schedule: schedule,
                             backend: ShapeBackend(plan: plan, activationBytes: t.trafficConfig.activationBytes))
            }
            let network = InMemoryNetwork<Message>(layout: t.layout) { $0.count }
            for step in 0..<t.steps {
                for r in executors.indices { executors[r].backend.step = step }
                try InMemoryCluster.runStep(&executors, network: network, step: step)
            }
            let prediction = try TrafficPrediction(t.trafficConfig)
            XCTAssertEqual(network.links, prediction.links.mapValues { $0 * t.steps }, what)
            XCTAssertEqual(executors.map(\.cache.peakBytes), prediction.peakCachedBytes, what)
            XCTAssertEqual(network.tensorsPerHop, prediction.tensorsPerHop, what)
            XCTAssertTrue(network.pending.isEmpty, what)
        }
    }
}

import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline

/// SplitMix64 for reproducible random configurations.
struct Rng {
    var state: UInt64
    mutating func int(_ r: ClosedRange<Int>) -> Int {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return r.lowerBound + Int((z ^ (z >> 31)) % UInt64(r.count))
    }
}

/// A random valid topology: ranks, virtual stages, layers, blocks, microbatches, residual, cache, schedule.
func randomTopology(_ rng: inout Rng, maxRanks: Int = 6) -> Topology {
    var t = Topology()
    t.name = "random"
    t.ranks = rng.int(2...maxRanks)
    t.virtualStages = rng.int(1...3)
    t.layers = rng.int(t.ranks * t.virtualStages...(t.ranks * t.virtualStages * 3 + 3))
    t.residual = [.standard, .full, .block][rng.int(0...2)]
    t.blocks = rng.int(1...t.layers)
    t.cache = CachePolicy.allCases[rng.int(0...2)]
    t.schedule = t.virtualStages > 1 ? .interleaved1F1B : [.gpipe, .oneFOneB][rng.int(0...1)]
    t.microbatches = t.virtualStages > 1 ? t.ranks * rng.int(1...3) : rng.int(1...9)
    t.microbatchSize = rng.int(1...2)
    t.seq = rng.int(1...8)
    t.hidden = 4 * rng.int(1...4)
    t.heads = 2
    t.steps = 1
    return t
}

final class TrafficPropertyTests: XCTestCase {
    /// The pure model against an in-memory execution of every rank's schedule: each delivered hop message
    /// adds its planned tensors to its link; the cache ledger replays each rank's real action order.
    func testPredictionEqualsInMemoryExecutionOnRandomConfigs() throws {
        var rng = Rng(state: 2026)
        for i in 0..<200 {
            let t = randomTopology(&rng, maxRanks: 8)
            try t.validate()
            let prediction = try TrafficPrediction(t.trafficConfig)
            let schedule = try Schedule(kind: t.schedule, layout: t.layout, microbatches: t.microbatches)
            let sim = try ScheduleSimulation(schedule)
            let plan = HopPlan(layout: t.layout, residual: t.residualConfig)
            var links: [LinkKey: Int] = [:]
            for d in sim.deliveries {
                XCTAssertEqual(d.from, t.layout.rank(ofChunk: d.direction == .forward ? d.hop : d.hop + 1))
                for role in plan.tensors[d.hop] {
                    links[LinkKey(src: d.from, dst: d.to, direction: d.direction, kind: role.kind), default: 0] += t.trafficConfig.activationBytes
                }
            }
            XCTAssertEqual(links, prediction.links, "config \(i): \(Report.describe(t))")
            XCTAssertEqual(prediction.forwardPayloadBytesPerStep, prediction.backwardPayloadBytesPerStep)
            for r in 0..<t.ranks {
                var ledger = CrossStageCacheLedger()
                for a in schedule.actions[r] { ledger.apply(a, plan: plan) }
                XCTAssertTrue(ledger.entries.isEmpty, "cache not freed on rank \(r), config \(i)")
            }
        }
    }

    /// The same configurations on a real cluster whose workers are threads of this process talking over real
    /// ipc sockets: measured bytes, header bytes, tensors per hop and cache peaks equal the model exactly.
    func testThreadClusterMeasuresExactlyThePrediction() throws {
        var rng = Rng(state: 77)
        for i in 0..<50 {
            var t = randomTopology(&rng, maxRanks: 5)
            t.name = "thread-cluster-\(i)"
            try t.validate()
            let result = try runOnThreads(t)
            XCTAssertTrue(result.matchesPrediction, "config \(i) \(Report.describe(t)):\n" + result.mismatches.joined(separator: "\n"))
            XCTAssertEqual(result.payloadBytesPerStep, result.prediction.payloadBytesPerStep)
        }
    }

    func runOnThreads(_ t: Topology) throws -> VariantResult {
        try ThreadCluster.with(t) { coordinator in try coordinator.run(t) }
    }
}

/// A cluster whose workers are threads of the test process (real sockets, no process start-up cost).
enum ThreadCluster {
    /// Starts a coordinator and one worker thread per rank, proves the links, runs `body`, stops everything.
    static func with<T>(_ t: Topology, _ body: (Coordinator) throws -> T) throws -> T {
        let coordinator = try Coordinator(topology: t, joinTimeout: 20, silenceTimeout: 20, spawnLocal: false)
        // Thread workers keep heartbeating even if stuck, so bound every phase: a lost message fails the test.
        coordinator.phaseTimeout = 120
        let group = DispatchGroup()
        for r in 0..<t.ranks {
            let endpoint = coordinator.endpoint
            group.enter()
            Thread { _ = Worker.main(join: endpoint, rank: r, faults: []); group.leave() }.start()
        }
        defer {
            coordinator.shutdown()
            if group.wait(timeout: .now() + 60) == .timedOut {
                XCTFail("worker threads of \(t.name) did not stop within 60 s of the coordinator's shutdown")
            }
        }
        try coordinator.start()
        return try body(coordinator)
    }
}

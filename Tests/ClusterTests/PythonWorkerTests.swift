import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline
@testable import Wire
import Model

/// docs/examples/shape_worker.py, a worker written from docs/protocol.md alone, runs ranks beside attnres
/// workers of the other ranks: every variant of `attnres compare` measures exactly what the model predicts.
final class PythonWorkerTests: XCTestCase {
    static let script = packageRoot.appendingPathComponent("docs/examples/shape_worker.py").path

    func requirePyZMQ() throws {
        if (try? Python.shell(["python3", "-c", "import zmq"]))?.status == 0 { return }
        guard (try? Python.shell(["python3", "-c", "pass"]))?.status == 0 else { throw XCTSkip("python3 is not installed") }
        for extra in [[], ["--break-system-packages"]] {
            _ = try? Python.shell(["python3", "-m", "pip", "install", "-q", "--timeout", "30", "pyzmq"] + extra)
            if (try? Python.shell(["python3", "-c", "import zmq"]))?.status == 0 { return }
        }
        throw XCTSkip("python3's pyzmq is missing and pip could not install it (run make deps)")
    }

    func start(_ executable: String, _ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return p
    }

    func runMixed(_ t: Topology, variants: [Topology], pythonRanks: Set<Int>) throws {
        try requirePyZMQ()
        _ = CLIProcess.becomeSubreaper
        let coordinator = try Coordinator(topology: t, joinTimeout: 60, silenceTimeout: 30, spawnLocal: false)
        coordinator.phaseTimeout = 120
        var processes: [Process] = []
        defer {
            coordinator.shutdown()
            for p in processes where !Watchdog.waitForExit(p, "worker \(p.arguments ?? [])", seconds: 30) {}
            CLIProcess.assertNoOrphans()
        }
        for r in 0..<t.ranks {
            let args = ["--join", coordinator.endpoint, "--rank", "\(r)"]
            processes.append(pythonRanks.contains(r) ? try start("/usr/bin/env", ["python3", PythonWorkerTests.script] + args)
                                                     : try start(CLIProcess.binary, ["worker"] + args))
        }
        try coordinator.start()
        for v in variants {
            let result = try coordinator.run(v)
            XCTAssertTrue(result.matchesPrediction, "\(v.residual)/\(v.cache): " + result.mismatches.joined(separator: "\n"))
        }
    }

    /// Every residual variant of `attnres compare` on the default 4 × 2 interleaved topology, ranks 0 and 2 in Python.
    func testPythonWorkersRunEveryVariantBesideAttnresWorkers() throws {
        let t = Topology()
        var variants: [Topology] = []
        for (residual, caches) in [(ResidualKind.standard, [CachePolicy.none]), (.full, CachePolicy.allCases), (.block, CachePolicy.allCases)] {
            for cache in caches {
                var v = t
                v.residual = residual
                v.cache = cache
                variants.append(v)
            }
        }
        try runMixed(t, variants: variants, pythonRanks: [0, 2])
    }

    /// Plain 1F1B with block boundaries off the chunk boundaries (partials travel), rank 1 in Python, over tcp.
    func testPythonWorkerOn1F1BWithPartials() throws {
        var t = Topology()
        t.ranks = 3; t.virtualStages = 1; t.schedule = .oneFOneB; t.layers = 10; t.blocks = 4; t.microbatches = 5; t.transport = .tcp
        var g = t
        g.schedule = .gpipe
        try runMixed(t, variants: [t, g], pythonRanks: [1])
    }
}

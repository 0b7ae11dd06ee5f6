import Foundation
import Model
import Pipeline
#if canImport(Glibc)
import Glibc
#endif

/// One check of `attnres smoke`: a JUnit test case. `details` carries the numbers (measured and predicted, or
/// both losses) whether it passed or not.
public struct SmokeCheck: Sendable, Equatable {
    /// JUnit classname: `attnres.smoke.shape`, `attnres.smoke.compute`, `attnres.smoke.processes`.
    public var group: String
    public var name: String
    /// nil = passed; otherwise why it failed.
    public var failure: String?
    public var details: String
    public var seconds: Double

    public var passed: Bool { failure == nil }
}

/// `attnres smoke`, the CI step: on a small local cluster, every variant in shape mode (measured == predicted on
/// every link, headers and tensors per hop; the cache peaks), one compute-mode run on a cluster of its own (the
/// pipeline's losses equal one process's `Trainer`), then that no worker process is left. Faults (`--fault`) are
/// injected into the compute cluster only, so a CI author can watch exactly that check fail while the others pass.
public struct SmokeTest {
    public var topology: Topology
    public var faults: [Fault] = []
    public var joinTimeout = 5.0, silenceTimeout = 3.0
    /// Upper bound of any one phase (join, a variant): a smoke step must never hang a CI job.
    public var phaseTimeout = 120.0
    public var workerExecutable = WorkerProcesses.selfExecutable
    /// Steps of the compute-mode run: 2, so the second loss depends on the first step's gradients and update.
    public var computeSteps = 2
    /// Relative tolerance of pipeline vs single-process losses (docs/pipeline-training.md: reductions in a
    /// different order can differ in the last bits; a real error is orders of magnitude larger).
    public static let lossTolerance: Float = 1e-6

    public init(topology: Topology) { self.topology = topology }

    /// Runs every check; `onCheck` sees each as it completes (progress, logs).
    public func run(onCheck: (SmokeCheck) -> Void = { _ in }) -> [SmokeCheck] {
        var checks: [SmokeCheck] = []
        func record(_ c: SmokeCheck) { checks.append(c); onCheck(c) }
        var pids: [Int32] = [], directories: [String] = []

        // Shape mode: every variant on one cluster.
        var shape = topology
        shape.mode = .shape
        let variants = comparisonVariants(of: shape)
        do {
            let coordinator = try start(shape, faults: [])
            defer { coordinator.shutdown() }
            pids += coordinator.workers.values.map(\.pid); directories.append(coordinator.ipcDirectory)
            for v in variants {
                let name = "\(Report.variantName(v))/\(v.cache.rawValue)"
                let started = monotonicSeconds()
                do {
                    let r = try coordinator.run(v)
                    let seconds = monotonicSeconds() - started
                    record(Self.trafficCheck(name, r, seconds: seconds))
                    record(Self.cacheCheck(name, r))
                } catch {
                    for check in ["traffic", "cache peaks"] {
                        record(SmokeCheck(group: "attnres.smoke.shape", name: "\(name): \(check)", failure: "the variant did not complete: \(error)",
                                          details: Report.describe(v), seconds: monotonicSeconds() - started))
                    }
                }
            }
        } catch {
            for v in variants {
                for check in ["traffic", "cache peaks"] {
                    record(SmokeCheck(group: "attnres.smoke.shape", name: "\(Report.variantName(v))/\(v.cache.rawValue): \(check)",
                                      failure: "the shape-mode cluster did not start: \(error)", details: Report.describe(shape), seconds: 0))
                }
            }
        }

        // Compute mode: the topology's own variant, against one process.
        var compute = topology
        compute.mode = .compute
        compute.steps = computeSteps
        let started = monotonicSeconds()
        let lossName = "\(Report.variantName(compute))/\(compute.cache.rawValue): pipeline loss == single process"
        do {
            let reference = try Self.singleProcessLosses(compute)
            let coordinator = try start(compute, faults: faults)
            defer { coordinator.shutdown() }
            pids += coordinator.workers.values.map(\.pid); directories.append(coordinator.ipcDirectory)
            let r = try coordinator.run(compute)
            record(Self.lossCheck(lossName, pipeline: r.losses, reference: reference, seconds: monotonicSeconds() - started))
        } catch {
            record(SmokeCheck(group: "attnres.smoke.compute", name: lossName, failure: "the compute-mode run failed: \(error)",
                              details: Report.describe(compute), seconds: monotonicSeconds() - started))
        }

        record(Self.processCheck(pids: pids, directories: directories))
        return checks
    }

    func start(_ t: Topology, faults: [Fault]) throws -> Coordinator {
        let c = try Coordinator(topology: t, faults: faults, joinTimeout: joinTimeout, silenceTimeout: silenceTimeout,
                                spawnLocal: true, workerExecutable: workerExecutable)
        c.phaseTimeout = phaseTimeout
        try c.start()
        return c
    }

    static func trafficCheck(_ name: String, _ r: VariantResult, seconds: Double) -> SmokeCheck {
        let links = Set(r.measuredLinks.keys).union(r.prediction.links.keys).sorted()
        var details = links.map { k in
            "link \(k.src)→\(k.dst) \(k.direction.rawValue) \(k.kind.rawValue): measured \(r.measuredLinks[k] ?? 0) B/step, predicted \(r.prediction.links[k] ?? 0) B/step"
        }
        details.append("headers: measured \(r.headerBytesPerStep) B/step, predicted \(r.prediction.headerBytesPerStep) B/step")
        details.append("tensors per hop: measured \(r.tensorsPerHop), predicted \(r.prediction.tensorsPerHop)")
        let bad = r.mismatches.filter { !$0.hasPrefix("peak cached bytes") }
        return SmokeCheck(group: "attnres.smoke.shape", name: "\(name): traffic", failure: bad.isEmpty ? nil : bad.joined(separator: "; "),
                          details: details.joined(separator: "\n"), seconds: seconds)
    }

    static func cacheCheck(_ name: String, _ r: VariantResult) -> SmokeCheck {
        let ok = r.peakCachedBytes == r.prediction.peakCachedBytes
        let numbers = "peak cached bytes per rank: measured \(r.peakCachedBytes), predicted \(r.prediction.peakCachedBytes)"
        return SmokeCheck(group: "attnres.smoke.shape", name: "\(name): cache peaks", failure: ok ? nil : numbers, details: numbers, seconds: 0)
    }

    static func lossCheck(_ name: String, pipeline: [Float], reference: [Float], seconds: Double) -> SmokeCheck {
        let numbers = "pipeline losses \(pipeline); single process \(reference); relative tolerance \(lossTolerance)"
        var failure: String?
        if pipeline.count != reference.count {
            failure = "\(pipeline.count) pipeline losses for \(reference.count) steps"
        } else if let i = pipeline.indices.first(where: { !(abs(pipeline[$0] - reference[$0]) <= lossTolerance * abs(reference[$0])) }) {
            failure = "step \(i + 1): pipeline loss \(pipeline[i]) ≠ single process \(reference[i])"
        }
        return SmokeCheck(group: "attnres.smoke.compute", name: name, failure: failure, details: numbers, seconds: seconds)
    }

    /// No worker process of either cluster is alive and their run directories are gone.
    static func processCheck(pids: [Int32], directories: [String]) -> SmokeCheck {
        let alive = pids.filter { kill($0, 0) == 0 }
        let left = directories.filter { FileManager.default.fileExists(atPath: $0) }
        var problems: [String] = []
        if !alive.isEmpty { problems.append("worker processes still alive: \(alive)") }
        if !left.isEmpty { problems.append("run directories left: \(left)") }
        return SmokeCheck(group: "attnres.smoke.processes", name: "no process or run directory left", failure: problems.isEmpty ? nil : problems.joined(separator: "; "),
                          details: "workers started: \(pids.sorted()); run directories: \(directories)", seconds: 0)
    }

    /// `attnres train`'s losses for the topology's model, microbatches, seed, steps and learning rate.
    public static func singleProcessLosses(_ t: Topology) throws -> [Float] {
        let config = TrainConfig(model: t.modelConfig, microbatches: t.microbatches, microbatchSize: t.microbatchSize, steps: t.steps,
                                 seed: UInt64(t.seed), learningRate: t.learningRate)
        var trainer = try Trainer(config: config, data: .synthetic(seq: t.seq, vocab: t.vocab, seed: config.seed))
        return (0..<t.steps).map { _ in trainer.step().loss }
    }
}

/// JUnit XML of smoke checks: one `<testsuite>` in a `<testsuites>`, one `<testcase>` per check, a `<failure>`
/// with the message and the numbers for each failed check, the numbers in `<system-out>` for every check. Valid
/// against Tests/junit/junit-4.xsd (the element and attribute set of the widely used Jenkins junit-4 schema).
public enum JUnitXML {
    public static func render(_ checks: [SmokeCheck], suite: String, properties: [(String, String)], seconds: Double,
                              timestamp: Date = Date()) -> String {
        let failures = checks.filter { !$0.passed }.count
        let stamp = ISO8601DateFormatter().string(from: timestamp).replacingOccurrences(of: "Z", with: "")
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        let hostname = String(cString: host)
        var out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<testsuites name=\"\(escape(suite))\" tests=\"\(checks.count)\" failures=\"\(failures)\" errors=\"0\" time=\"\(time(seconds))\">\n"
        out += "  <testsuite name=\"\(escape(suite))\" tests=\"\(checks.count)\" failures=\"\(failures)\" errors=\"0\" skipped=\"0\" "
            + "time=\"\(time(seconds))\" timestamp=\"\(stamp)\" hostname=\"\(escape(hostname))\">\n"
        out += "    <properties>\n"
        for (k, v) in properties { out += "      <property name=\"\(escape(k))\" value=\"\(escape(v))\"/>\n" }
        out += "    </properties>\n"
        for c in checks {
            out += "    <testcase name=\"\(escape(c.name))\" classname=\"\(escape(c.group))\" time=\"\(time(c.seconds))\">\n"
            if let f = c.failure {
                out += "      <failure message=\"\(escape(f))\" type=\"mismatch\">\(escape(f + "\n" + c.details))</failure>\n"
            }
            out += "      <system-out>\(escape(c.details))</system-out>\n"
            out += "    </testcase>\n"
        }
        return out + "  </testsuite>\n</testsuites>\n"
    }

    static func time(_ s: Double) -> String { String(format: "%.3f", s) }

    static func escape(_ s: String) -> String {
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "\n", "\t": out.unicodeScalars.append(u)
            // XML 1.0 has no other control characters, not even escaped.
            case _ where u.value < 0x20: out += "?"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }
}

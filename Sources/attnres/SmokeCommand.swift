import ArgumentParser
import Cluster
import Foundation
import Numerics

struct SmokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smoke",
        abstract: "The CI step: a small local cluster, every variant in shape mode and a compute-mode run, every check reported (JUnit XML).",
        discussion: """
        Checks, one JUnit test case each: per variant (standard; full and block × none, cross-stage, received-only) \
        measured == predicted on every link, the frame headers and tensors per hop ("traffic") and the peak cached \
        bytes per rank ("cache peaks"); the topology's variant in compute mode for 2 steps (the second step's loss \
        depends on the first step's gradients and AdamW update) with the pipeline's losses equal to one process's \
        within a relative 1e-6; and no worker process or run directory left. Exit 0 only when every check holds, 1 when one \
        fails, 2 on bad input (topology, flags, faults, output paths).

        --fault injects a fault into the compute-mode cluster only (e.g. --fault kill:1@1), so exactly that check fails.

        Examples:
          attnres smoke --junit smoke.xml
          attnres smoke topologies/local-8x1-1f1b.yaml --junit smoke.xml
        """)

    @OptionGroup var topology: TopologyOptions
    @OptionGroup var cluster: ClusterOptions
    @Option(help: "Write the checks as JUnit XML to this file.") var junit: String?

    func run() throws {
        BLASKernel.reexecWithPreferredKernelIfNeeded()
        let started = Date()
        // Bad input exits 2, so a CI log tells a misconfigured step from a failed check (1).
        let t: Topology, faults: [Fault]
        do {
            t = try topology.resolve()
            var compute = t
            compute.mode = .compute
            compute.steps = 2
            try compute.validate()
            faults = try cluster.check(compute, outputs: [OutputPath("--junit", junit, .file)], resume: nil)
        } catch {
            printError("Error: \(error)")
            throw ExitCode(2)
        }
        var smoke = SmokeTest(topology: t)
        smoke.faults = faults
        smoke.joinTimeout = cluster.joinTimeout
        smoke.silenceTimeout = cluster.silenceTimeout
        Coordinator.interruptOnSignals()
        let progress = Progress()
        var done = 0
        let total = 2 * comparisonVariants(of: t).count + 2
        let checks = smoke.run { c in
            done += 1
            progress.update("check \(done)/\(total): \(c.name) \(c.passed ? "ok" : "FAILED")", fraction: Double(done) / Double(total))
        }
        progress.finish()
        let seconds = Date().timeIntervalSince(started)
        print("attnres smoke: " + Report.describe(t))
        print("")
        for c in checks {
            print("\(c.passed ? "PASS" : "FAIL")  \(c.group.replacingOccurrences(of: "attnres.smoke.", with: ""))  \(c.name)")
            if let f = c.failure { print("      " + f) }
        }
        let failed = checks.filter { !$0.passed }.count
        print(String(format: "\n%d checks, %d failed, %.1f s", checks.count, failed, seconds))
        if let junit {
            let xml = JUnitXML.render(checks, suite: "attnres smoke", properties: [("topology", Report.describe(t)), ("command", CommandLine.arguments.joined(separator: " "))],
                                      seconds: seconds)
            try AtomicFile.write(Array(xml.utf8), to: junit)
        }
        if let json = cluster.json {
            let rows: [[String: Any]] = checks.map { ["group": $0.group, "name": $0.name, "passed": $0.passed, "failure": $0.failure ?? NSNull(),
                                                       "details": $0.details, "seconds": $0.seconds] }
            let data = try JSONSerialization.data(withJSONObject: ["checks": rows, "seconds": seconds], options: [.prettyPrinted, .sortedKeys])
            try data.write(to: URL(fileURLWithPath: json))
        }
        if failed > 0 { throw ExitCode(1) }
    }
}

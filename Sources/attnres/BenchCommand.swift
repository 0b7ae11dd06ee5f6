import ArgumentParser
import Cluster
import Foundation
import Wire

/// `attnres bench`: benchmarks, separate from tests; each prints ratios against a baseline measured in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (ratios against baselines measured in the same run).",
        subcommands: [BenchWire.self, BenchModel.self])
}

struct BenchWire: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire",
        abstract: "The worker data path (encode, send, receive, decode) vs a raw libzmq PUSH/PULL loop, over ipc and tcp.",
        discussion: "Goal: ≥ 0.95 of raw libzmq at 1 MiB and above. Median of alternating trials; build with -c release.")

    @Option(help: "Tensor sizes in bytes.") var sizes: [Int] = [64 << 10, 1 << 20, 8 << 20]
    @Option(help: "Trials per size and side.") var trials = 9
    @Option(help: "Bytes moved per trial.") var bytesPerTrial = 1 << 30
    @Option(help: "ipc and/or tcp.") var transport: [TransportKind] = [.ipc, .tcp]

    func run() throws {
        let progress = Progress()
        let rows = try WireBenchmark.run(transports: transport, sizes: sizes, trials: trials, bytesPerTrial: bytesPerTrial) { progress.update($0) }
        progress.finish()
        print("attnres bench wire — libzmq \(ZContext.version), \(ProcessInfo.processInfo.activeProcessorCount) cores, \(trials) trials of \(Report.human(bytesPerTrial)) per cell, median")
        print("command: \(CommandLine.arguments.joined(separator: " "))")
        print("")
        print("transport  tensor     raw libzmq GB/s (min-max)  attnres data path GB/s (min-max)  ratio")
        for r in rows {
            let size = Report.human(r.bytes).padding(toLength: 10, withPad: " ", startingAt: 0)
            let raw = String(format: "%5.2f (%.2f-%.2f)", r.rawGBps, r.rawSpread.lowerBound, r.rawSpread.upperBound)
            let ours = String(format: "%5.2f (%.2f-%.2f)", r.oursGBps, r.oursSpread.lowerBound, r.oursSpread.upperBound)
            print("\(r.transport.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0))  \(size) \(raw.padding(toLength: 25, withPad: " ", startingAt: 0))  \(ours.padding(toLength: 32, withPad: " ", startingAt: 0))  \(String(format: "%5.3f", r.ratio))")
        }
        let big = rows.filter { $0.bytes >= 1 << 20 }
        if let worst = big.map(\.ratio).min() {
            print(String(format: "\nworst ratio at ≥ 1 MiB: %.3f (goal ≥ 0.95): %@", worst, worst >= 0.95 ? "met" : "NOT met"))
        }
    }
}

import ArgumentParser
import Cluster
import Foundation
import Pipeline

struct BenchSimulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Step-time simulation speed: events per second and how time grows with ranks and microbatches.",
        discussion: """
        Interleaved 1F1B with V = 4 virtual stages, one layer per chunk, standard residual, α-β links; the schedule \
        is built (Schedule) and replayed (StepTimeSimulation) without keeping spans. Goal: 1,024 ranks × V = 4 × \
        4,096 microbatches in under 10 s. Build with -c release.
        """)

    @Option(help: "Rank counts.") var ranks: [Int] = [64, 256, 1024]
    @Option(help: "Microbatch counts (multiples of every rank count).") var microbatches: [Int] = [1024, 4096]
    @Option(help: "Virtual stages per rank.") var virtual = 4

    func run() throws {
        print("attnres bench simulate — \(ProcessInfo.processInfo.activeProcessorCount) cores; command: \(CommandLine.arguments.joined(separator: " "))")
        print("")
        print("ranks  microbatches  V  actions      schedule s  replay s  total s  events/s (replay)  step (simulated)")
        for p in ranks {
            for m in microbatches {
                guard m % p == 0 else { print("\(p) \(m): skipped (microbatches must be a multiple of ranks)"); continue }
                let layout = Layout(ranks: p, virtualStages: virtual, layers: p * virtual)
                let t0 = Date()
                let schedule = try Schedule(kind: .interleaved1F1B, layout: layout, microbatches: m)
                let t1 = Date()
                let costs = StepCosts(forward: Array(repeating: 1e-3, count: layout.chunks), backward: Array(repeating: 2e-3, count: layout.chunks),
                                      hopBytes: Array(repeating: 16 << 20, count: layout.hops), defaultLink: LinkCost(latency: 5e-6, bandwidth: 50e9))
                let sim = try StepTimeSimulation(schedule, costs: costs, keepSpans: false)
                let t2 = Date()
                let actions = schedule.actions.reduce(0) { $0 + $1.count }
                let build = t1.timeIntervalSince(t0), replay = t2.timeIntervalSince(t1)
                print(String(format: "%5d  %12d  %d  %11d  %10.2f  %8.2f  %7.2f  %17.3g  %.3f s", p, m, virtual, actions, build, replay, build + replay,
                             Double(sim.events) / replay, sim.stepSeconds))
            }
        }
    }
}

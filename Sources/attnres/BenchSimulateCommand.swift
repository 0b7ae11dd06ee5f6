import ArgumentParser
import Cluster
import Foundation
import Pipeline
#if canImport(Glibc)
import Glibc
#endif

struct BenchSimulate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Step-time simulation speed: events per second and how time grows with ranks and microbatches.",
        discussion: """
        Interleaved 1F1B with V = 4 virtual stages, one layer per chunk, standard residual, α-β links; each rank's \
        actions are generated as the replay reads them (ScheduleProgram) and replayed (StepTimeSimulation) without \
        keeping spans. --stored also times building the whole Schedule first and replaying that, in the same \
        process, so the two can be set side by side at the same load. Goal: 1,024 ranks × V = 4 × 4,096 \
        microbatches in under 10 s. Build with -c release.
        """)

    @Option(help: "Rank counts.") var ranks: [Int] = [64, 256, 1024]
    @Option(help: "Microbatch counts (multiples of every rank count).") var microbatches: [Int] = [1024, 4096]
    @Option(help: "Virtual stages per rank.") var virtual = 4
    @Flag(help: "Also time the stored path: build Schedule (every action in memory), then replay it.") var stored = false

    /// The process's peak resident set so far, in MiB (Linux reports ru_maxrss in KiB).
    static func peakMiB() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }

    func run() throws {
        print("attnres bench simulate — \(ProcessInfo.processInfo.activeProcessorCount) cores; command: \(CommandLine.arguments.joined(separator: " "))")
        print("peak MiB is the process's peak resident set after the row (monotone: rows run smallest first)")
        print("")
        print("ranks  microbatches  V  actions      path      build s  replay s  total s  events/s (total)  peak MiB  step (simulated)")
        for p in ranks {
            for m in microbatches {
                guard m % p == 0 else { print("\(p) \(m): skipped (microbatches must be a multiple of ranks)"); continue }
                let layout = Layout(ranks: p, virtualStages: virtual, layers: p * virtual)
                let costs = StepCosts(forward: Array(repeating: 1e-3, count: layout.chunks), backward: Array(repeating: 2e-3, count: layout.chunks),
                                      hopBytes: Array(repeating: 16 << 20, count: layout.hops), defaultLink: LinkCost(latency: 5e-6, bandwidth: 50e9))
                func row(_ path: String, _ build: Double, _ replay: Double, _ sim: StepTimeSimulation, actions: Int) {
                    print(String(format: "%5d  %12d  %d  %11d  %-8@  %7.2f  %8.2f  %7.2f  %16.3g  %8.0f  %.3f s", p, m, virtual, actions, path,
                                 build, replay, build + replay, Double(sim.events) / (build + replay), BenchSimulate.peakMiB(), sim.stepSeconds))
                }
                let t0 = Date()
                let program = try ScheduleProgram(kind: .interleaved1F1B, layout: layout, microbatches: m)
                let t1 = Date()
                let sim = try StepTimeSimulation(program, costs: costs, keepSpans: false)
                let t2 = Date()
                row("streamed", t1.timeIntervalSince(t0), t2.timeIntervalSince(t1), sim, actions: program.actionCount)
                guard stored else { continue }
                let s0 = Date()
                let schedule = try Schedule(kind: .interleaved1F1B, layout: layout, microbatches: m)
                let s1 = Date()
                let storedSim = try StepTimeSimulation(schedule, costs: costs, keepSpans: false)
                let s2 = Date()
                row("stored", s1.timeIntervalSince(s0), s2.timeIntervalSince(s1), storedSim, actions: schedule.actions.reduce(0) { $0 + $1.count })
                guard storedSim.stepSeconds == sim.stepSeconds else {
                    throw ValidationError("the stored and streamed replays disagree: \(storedSim.stepSeconds) s vs \(sim.stepSeconds) s")
                }
            }
        }
    }
}

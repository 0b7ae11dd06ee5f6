import ArgumentParser

/// `attnres bench`: benchmarks, separate from tests; each prints ratios against a baseline measured in the same run.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (ratios against baselines measured in the same run).",
        subcommands: [BenchModel.self])
}

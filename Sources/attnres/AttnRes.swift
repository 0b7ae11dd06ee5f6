import ArgumentParser

/// The `attnres` command line: parses arguments and delegates to the library targets; no logic of its own.
@main
struct AttnRes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attnres",
        abstract: "Multi-process simulator of pipeline-parallel training with Attention Residuals.",
        discussion: """
        Launch a local cluster of worker processes (one per pipeline rank) that exchange activations, \
        block representations and their gradients over ZeroMQ, and compare the measured traffic with \
        the analytical model.
        """,
        subcommands: [Run.self, Compare.self, Predict.self, Simulate.self, SweepCommand.self, SmokeCommand.self, ScheduleCommand.self, Train.self,
                      Merge.self, Bench.self, StatsPlot.self,
                      WorkerCommand.self, CoordinatorCommand.self, KeysCommand.self])
}

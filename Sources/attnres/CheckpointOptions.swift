import ArgumentParser
import Cluster

/// The checkpoint options of a compute run, the same for `run` (local workers) and `coordinator` (workers started
/// elsewhere: DIR must then be one directory every worker's host sees, a shared file system, since each rank writes
/// its own file there and the coordinator reads them all to write the manifest).
struct CheckpointOptions: ParsableArguments {
    @Option(help: "Compute mode: write one checkpoint file per rank and a manifest into this directory after the last step.")
    var save: String?
    @Option(help: "Compute mode, with --save: also checkpoint after every K-th step (1 ≤ K ≤ steps), each into DIR/step-N, DIR/latest naming the newest complete one.")
    var checkpointEvery: Int?
    @Option(help: "Compute mode: continue from the checkpoint in this directory (its steps count towards the batches); for a directory of periodic checkpoints, the one DIR/latest names.")
    var resume: String?

    var given: Bool { save != nil || checkpointEvery != nil || resume != nil }

    /// `--save` as an output path to probe before the run.
    var outputs: [OutputPath] { [OutputPath("--save", save, .directory)] }

    /// Checks of the resolved topology that need no process (`--checkpoint-every`'s range and company).
    func check(_ t: Topology) throws { try CheckpointPlan.check(every: checkpointEvery, save: save, topology: t) }

    /// Runs `t` on `coordinator` with these checkpoints.
    func run(_ coordinator: Coordinator, _ t: Topology, trace: Bool = false, onStep: ((Int, Float?) -> Void)? = nil) throws -> VariantResult {
        try coordinator.run(t, resume: resume, save: save, checkpointEvery: checkpointEvery, trace: trace, onStep: onStep)
    }
}

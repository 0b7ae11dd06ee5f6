import Foundation

/// Periodic checkpoints (`--save DIR --checkpoint-every K`): a run that dies at step n must leave the checkpoint
/// before it whole, so each checkpoint lives in its own directory and a pointer names the newest complete one.
///
///     DIR/step-00000004/rank-R.safetensors, manifest.json    one complete checkpoint (the layout of `Checkpoint`)
///     DIR/step-00000008/…                                    the next one
///     DIR/latest                                             "step-00000008": the newest complete checkpoint
///
/// Commit order: every rank writes its file (atomically), then the coordinator writes that directory's manifest
/// (atomically), then replaces `latest` (atomically). A crash at any point leaves `latest` naming a checkpoint
/// whose manifest and rank files all exist and agree; a directory newer than `latest` is never read, and a later
/// run that reaches the same step rewrites it. Without `--checkpoint-every`, `--save DIR` keeps the single
/// checkpoint directly in DIR, written after the last step.
public struct CheckpointPlan: Sendable, Equatable {
    /// Where checkpoints go (`--save`).
    public let directory: String
    /// Steps between checkpoints (`--checkpoint-every`); nil = one checkpoint, after the last step, directly in `directory`.
    public let every: Int?

    public init(directory: String, every: Int? = nil) { self.directory = directory; self.every = every }

    static let latestFile = "latest"
    /// Largest `latest` read: it holds one short directory name.
    static let latestLimit = 4096

    /// Whether DIR has a `latest` entry at all, a dangling symlink included: `FileManager.fileExists` follows the
    /// link and says no, and DIR would then be taken for a single checkpoint ("manifest.json: missing").
    static func hasLatest(_ directory: String) -> Bool {
        var st = stat()
        return lstat(Checkpoint.path(directory, latestFile), &st) == 0
    }

    /// The sub-directory holding the state after `stepsCompleted` optimizer steps (zero-padded, so names sort by step).
    static func name(stepsCompleted: Int) -> String {
        let digits = String(stepsCompleted)
        return "step-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }

    /// Whether the run writes a checkpoint after local step `step` (0-based) of a run of `steps` steps that began
    /// after `firstStep` steps: every K-th optimizer step counted across resumes (so a resumed run checkpoints at
    /// the same steps as an uninterrupted one), and always after the last step.
    public func writes(afterStep step: Int, firstStep: Int, steps: Int) -> Bool {
        if step == steps - 1 { return true }
        guard let every else { return false }
        return (firstStep + step + 1) % every == 0
    }

    /// The directory the checkpoint holding `stepsCompleted` steps is written to.
    public func target(stepsCompleted: Int) -> String {
        every == nil ? directory : Checkpoint.path(directory, CheckpointPlan.name(stepsCompleted: stepsCompleted))
    }

    /// Makes the checkpoint of `stepsCompleted` steps the one a resume takes, once every rank wrote its file:
    /// its manifest, then (periodic checkpoints) the `latest` pointer.
    func commit(topology: Topology, stepsCompleted: Int) throws {
        try Checkpoint.writeManifest(directory: target(stepsCompleted: stepsCompleted), topology: topology, stepsCompleted: stepsCompleted)
        guard every != nil else { return }
        try AtomicFile.write(Array((CheckpointPlan.name(stepsCompleted: stepsCompleted) + "\n").utf8),
                             to: Checkpoint.path(directory, CheckpointPlan.latestFile))
    }

    /// `--checkpoint-every K` needs `--save`, compute mode and 1 ≤ K ≤ steps (a K beyond the run would never write
    /// a periodic checkpoint, so recovery would silently have nothing to resume). A single checkpoint (no K) must not
    /// go into a directory of periodic ones, where `latest` would hide it.
    public static func check(every: Int?, save: String?, topology t: Topology) throws {
        if let every {
            let flag = "--checkpoint-every"
            guard save != nil else { throw RunOptionError(flag: flag, value: String(every), problem: "needs --save DIR (where the checkpoints go)") }
            guard t.mode == .compute else {
                throw RunOptionError(flag: flag, value: String(every), problem: "checkpoints hold model parameters: use mode compute")
            }
            guard (1...max(1, t.steps)).contains(every) else {
                throw RunOptionError(flag: flag, value: String(every), problem: "must be in 1…\(t.steps) (the run's steps)")
            }
        } else if let save, hasLatest(save) {
            throw RunOptionError(flag: "--save", value: save,
                                 problem: "holds periodic checkpoints (\(Checkpoint.path(save, latestFile)) exists): add --checkpoint-every K, or save elsewhere")
        }
    }
}

extension Checkpoint {
    /// The checkpoint `--resume DIR` and `attnres merge DIR` read: the one `DIR/latest` names when DIR holds
    /// periodic checkpoints, else DIR itself.
    public static func resolve(_ directory: String) throws -> String {
        let pointer = path(directory, CheckpointPlan.latestFile)
        guard CheckpointPlan.hasLatest(directory) else { return directory }
        let bytes: [UInt8]
        do { bytes = try InputFile.bytes(pointer, limit: CheckpointPlan.latestLimit) } catch let e as InputFileError {
            throw Failure.unreadable(pointer, e.problem)
        }
        let name = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let digits = name.dropFirst("step-".count)
        guard name.hasPrefix("step-"), !digits.isEmpty, digits.count <= 20, digits.allSatisfy({ ("0"..."9").contains($0) }) else {
            throw Failure.inconsistent(pointer, "names '\(name.prefix(80))', not a checkpoint directory step-N of \(directory)")
        }
        return path(directory, name)
    }
}

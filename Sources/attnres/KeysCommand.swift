import ArgumentParser
import Cluster

/// `attnres keys`: CURVE key directories for `security: {curve: DIR}` and `attnres worker --keys DIR`.
struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "CURVE keys for authenticated, encrypted links (docs/multi-host.md, \"Authentication (CURVE)\").",
        subcommands: [KeysGenerate.self])
}

struct KeysGenerate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write the coordinator's and each rank's CURVE key pair (Z85; secret files mode 0600).",
        discussion: """
        Files: coordinator.pub, coordinator.secret, rank-R.pub, rank-R.secret for R = 0 … P−1, one key per file. \
        The coordinator's host needs coordinator.* and every rank-R.pub; rank R's host coordinator.pub and rank-R.*.
          attnres keys generate keys --ranks 4
        """)

    @Argument(help: "Directory to write the keys into (created mode 0700 when absent).") var directory: String
    @Option(parsing: .unconditional, help: "Pipeline ranks P (2…512).") var ranks: Int
    @Flag(help: "Replace existing key files.") var force = false

    func run() throws {
        let files = try CurveKeys.generate(directory: directory, ranks: ranks, force: force)
        print("wrote \(files.count) key files (\(ranks) ranks and the coordinator) to \(directory)")
    }
}

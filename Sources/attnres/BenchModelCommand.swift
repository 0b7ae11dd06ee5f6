import ArgumentParser

/// `attnres bench model`: compute benchmarks of the model (placeholder filled in below).
struct BenchModel: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "model", abstract: "Benchmark the model's compute.")
    func run() throws {}
}

import Foundation
import Model
import Numerics
import Pipeline

/// Checkpoints of a compute-mode run: one safetensors file per rank (its chunks' parameters and AdamW state) and a
/// manifest. `attnres merge` turns them into one file of the whole model, named as `attnres train --export` names it.
///
/// Rank file `rank-R.safetensors`: every parameter under its model name, its AdamW moments as `adam.m.NAME` and
/// `adam.v.NAME`, and metadata `adam_step`, `rank`, `chunks`, `steps_completed`.
public enum Checkpoint {
    public static let format = "attnres-checkpoint-1"

    /// The manifest (`manifest.json`).
    public struct Manifest: Codable, Sendable {
        public struct RankFile: Codable, Sendable { public var rank: Int; public var file: String; public var chunks: [Int] }
        public var format: String
        /// Optimizer steps taken since initialisation (across resumes).
        public var stepsCompleted: Int
        public var topology: Topology
        public var ranks: [RankFile]
    }

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(String, String)
        case incompatible(String)

        public var description: String {
            switch self {
            case .unreadable(let path, let why): return "checkpoint \(path): \(why)"
            case .incompatible(let why): return "cannot resume: \(why)"
            }
        }
    }

    static func rankFile(_ rank: Int) -> String { "rank-\(rank).safetensors" }

    /// Writes one rank's parameters and optimizer state.
    static func saveRank(directory: String, rank: Int, chunks: [Int], parameters: [Int: ParameterSet], optimizers: [Int: AdamW],
                         stepsCompleted: Int) throws {
        var file = SafeTensors()
        var adamStep = 0
        for c in chunks {
            let p = parameters[c]!, o = optimizers[c]!
            for n in p.names { file.add(n, p[n]) }
            for n in p.names { file.add("adam.m.\(n)", o.m[n]); file.add("adam.v.\(n)", o.v[n]) }
            adamStep = o.step
        }
        file.metadata = ["adam_step": String(adamStep), "rank": String(rank), "chunks": chunks.map(String.init).joined(separator: ","),
                         "steps_completed": String(stepsCompleted)]
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try file.write(to: URL(fileURLWithPath: directory).appendingPathComponent(rankFile(rank)))
    }

    /// Loads one rank's chunk parameters and optimizer state, checking every name and shape.
    static func loadRank(directory: String, rank: Int, chunks: [Int: ModelChunk], learningRate: Float)
        throws -> (parameters: [Int: ParameterSet], optimizers: [Int: AdamW]) {
        let path = URL(fileURLWithPath: directory).appendingPathComponent(rankFile(rank))
        let file: SafeTensors
        do { file = try SafeTensors(contentsOf: path) } catch { throw Failure.unreadable(path.path, "\(error)") }
        guard let step = file.metadata["adam_step"].flatMap(Int.init) else { throw Failure.unreadable(path.path, "metadata adam_step missing") }
        var params: [Int: ParameterSet] = [:], optimizers: [Int: AdamW] = [:]
        for (c, chunk) in chunks {
            let specs = chunk.parameterSpecs
            do {
                let p = try file.parameters(specs: specs)
                var o = AdamW(parameters: p, learningRate: learningRate)
                o.restore(m: try named(file, prefix: "adam.m.", specs: specs), v: try named(file, prefix: "adam.v.", specs: specs), step: step)
                params[c] = p
                optimizers[c] = o
            } catch { throw Failure.unreadable(path.path, "chunk \(c): \(error)") }
        }
        return (params, optimizers)
    }

    /// Tensors stored as PREFIX + name, returned under the parameters' own specs.
    static func named(_ file: SafeTensors, prefix: String, specs: [ParameterSpec]) throws -> ParameterSet {
        var out = ParameterSet()
        for s in specs {
            guard let e = file.entries[prefix + s.name] else { throw SafeTensorsError.missing(name: prefix + s.name) }
            let t = try e.floats()
            guard t.shape == s.shape else { throw Failure.incompatible("\(prefix + s.name) has shape \(t.shape), expected \(s.shape)") }
            out.insert(s, t)
        }
        return out
    }

    public static func readManifest(_ directory: String) throws -> Manifest {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("manifest.json")
        do {
            let d = JSONDecoder()
            d.keyDecodingStrategy = .convertFromSnakeCase
            let m = try d.decode(Manifest.self, from: Data(contentsOf: path))
            guard m.format == format else { throw Failure.unreadable(path.path, "format \(m.format), expected \(format)") }
            return m
        } catch let f as Failure { throw f } catch {
            throw Failure.unreadable(path.path, "\(error.localizedDescription)")
        }
    }

    static func writeManifest(_ m: Manifest, to directory: String) throws {
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try e.encode(m).write(to: URL(fileURLWithPath: directory).appendingPathComponent("manifest.json"))
    }

    /// A resumed run must train the same model on the same pipeline.
    static func checkCompatible(_ saved: Topology, _ now: Topology) throws {
        let a = [saved.layers, saved.hidden, saved.heads, saved.seq, saved.vocab, saved.ranks, saved.virtualStages, saved.microbatches,
                 saved.microbatchSize, saved.seed, saved.residual == .block ? saved.blocks : 0]
        let b = [now.layers, now.hidden, now.heads, now.seq, now.vocab, now.ranks, now.virtualStages, now.microbatches,
                 now.microbatchSize, now.seed, now.residual == .block ? now.blocks : 0]
        guard a == b, saved.residual == now.residual else {
            throw Failure.incompatible("the checkpoint was written by \(Report.describe(saved)); this run is \(Report.describe(now))")
        }
    }

    /// `attnres merge`: the whole model in one safetensors file, canonical names and order.
    public static func merge(directory: String, output: String) throws -> Int {
        let manifest = try readManifest(directory)
        var merged = SafeTensors()
        var all: [String: Tensor] = [:]
        for r in manifest.ranks {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(r.file)
            let file: SafeTensors
            do { file = try SafeTensors(contentsOf: path) } catch { throw Failure.unreadable(path.path, "\(error)") }
            for n in file.names where !n.hasPrefix("adam.") { all[n] = try file.entries[n]!.floats() }
        }
        for spec in ParameterNames.all(config: manifest.topology.modelConfig) {
            guard let t = all[spec.name] else { throw Failure.unreadable(directory, "no rank file holds \(spec.name)") }
            merged.add(spec.name, t)
        }
        merged.metadata = ["steps_completed": String(manifest.stepsCompleted), "source": "attnres merge"]
        try merged.write(to: URL(fileURLWithPath: output))
        return merged.names.count
    }
}

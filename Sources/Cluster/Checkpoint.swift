import Foundation
import Model
import Numerics
import Pipeline

/// Checkpoints of a compute-mode run: one safetensors file per rank (its chunks' parameters and AdamW state) and a
/// manifest. `attnres merge` turns them into one file of the whole model, named as `attnres train --export` names it.
///
/// Rank file `rank-R.safetensors`: every parameter under its model name, its AdamW moments as `adam.m.NAME` and
/// `adam.v.NAME`, and metadata `adam_step`, `rank`, `chunks`, `steps_completed`.
///
/// A checkpoint cannot lie: every file is written atomically (`AtomicFile`), the coordinator writes the manifest
/// last, once every rank has reported, with each rank file's size and SHA-256; reading a checkpoint (resume, merge)
/// refuses, naming the file, a missing manifest or rank file, a size or hash that differs, a rank whose
/// `steps_completed` is not the manifest's, or another format.
public enum Checkpoint {
    public static let format = "attnres-checkpoint-2"
    /// Most optimizer steps a checkpoint may claim: far beyond any run, and small enough that step arithmetic
    /// (first step + steps + 1) never overflows.
    public static let mostSteps = 1 << 40
    /// Largest manifest read (a manifest lists one small entry per rank).
    static let manifestLimit = 16 << 20
    static let manifestFile = "manifest.json"

    /// The manifest (`manifest.json`).
    public struct Manifest: Codable, Sendable {
        public struct RankFile: Codable, Sendable {
            public var rank: Int
            public var file: String
            public var chunks: [Int]
            /// The file's size in bytes and its SHA-256 (hex) when the manifest was written.
            public var bytes: Int
            public var sha256: String
        }
        public var format: String
        /// Optimizer steps taken since initialisation (across resumes); every rank file records the same.
        public var stepsCompleted: Int
        public var topology: Topology
        public var ranks: [RankFile]
    }

    public enum Failure: Error, CustomStringConvertible {
        case unreadable(String, String)
        case incompatible(String)
        /// A file of the checkpoint disagrees with its manifest (or is missing): the checkpoint is incomplete or altered.
        case inconsistent(String, String)

        public var description: String {
            switch self {
            case .unreadable(let path, let why): return "checkpoint \(path): \(why)"
            case .incompatible(let why): return "cannot resume: \(why)"
            case .inconsistent(let path, let why): return "checkpoint \(path): \(why); refusing an incomplete or altered checkpoint"
            }
        }
    }

    static func rankFile(_ rank: Int) -> String { "rank-\(rank).safetensors" }

    static func path(_ directory: String, _ file: String) -> String { URL(fileURLWithPath: directory).appendingPathComponent(file).path }

    /// Writes one rank's parameters and optimizer state (atomically: a reader sees the old file or the new one).
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
        try AtomicFile.write(try file.serialized(), to: path(directory, rankFile(rank)))
    }

    /// Loads one rank's chunk parameters and optimizer state, checking the bytes it loads against the manifest and
    /// every name and shape.
    static func loadRank(directory: String, rank: Int, chunks: [Int: ModelChunk], learningRate: Float)
        throws -> (parameters: [Int: ParameterSet], optimizers: [Int: AdamW]) {
        let manifest = try decodeManifest(directory)
        guard let entry = manifest.ranks.first(where: { $0.rank == rank }) else {
            throw Failure.inconsistent(path(directory, manifestFile), "lists no file for rank \(rank)")
        }
        let (file, filePath) = try checkedRankFile(entry, directory: directory, stepsCompleted: manifest.stepsCompleted)
        guard let step = file.metadata["adam_step"].flatMap(Int.init) else { throw Failure.unreadable(filePath, "metadata adam_step missing") }
        // AdamW takes one step per optimizer step, so its count is the checkpoint's.
        guard step == manifest.stepsCompleted else {
            throw Failure.inconsistent(filePath, "metadata adam_step \(step) differs from the checkpoint's steps_completed \(manifest.stepsCompleted)")
        }
        var params: [Int: ParameterSet] = [:], optimizers: [Int: AdamW] = [:]
        for (c, chunk) in chunks {
            let specs = chunk.parameterSpecs
            do {
                let p = try file.parameters(specs: specs)
                var o = AdamW(parameters: p, learningRate: learningRate)
                o.restore(m: try named(file, prefix: "adam.m.", specs: specs), v: try named(file, prefix: "adam.v.", specs: specs), step: step)
                params[c] = p
                optimizers[c] = o
            } catch { throw Failure.unreadable(filePath, "chunk \(c): \(error)") }
        }
        return (params, optimizers)
    }

    /// Reads the rank file `entry` names and checks it against the manifest: size, SHA-256, rank and steps.
    static func checkedRankFile(_ entry: Manifest.RankFile, directory: String, stepsCompleted: Int) throws -> (SafeTensors, String) {
        let filePath = path(directory, entry.file)
        let bytes: [UInt8]
        // The manifest's size bounds the read: a rank file swapped for something larger is refused before it is read.
        do { bytes = try InputFile.bytes(filePath, limit: entry.bytes) } catch let e as InputFileError {
            throw Failure.inconsistent(filePath, "rank \(entry.rank)'s file: \(e.problem)")
        }
        guard bytes.count == entry.bytes else {
            throw Failure.inconsistent(filePath, "is \(bytes.count) bytes, the manifest says \(entry.bytes)")
        }
        let digest = SHA256.hex(bytes)
        guard digest == entry.sha256 else {
            throw Failure.inconsistent(filePath, "SHA-256 \(digest) differs from the manifest's \(entry.sha256)")
        }
        let file: SafeTensors
        do { file = try SafeTensors(bytes: bytes) } catch { throw Failure.unreadable(filePath, "\(error)") }
        try checkMetadata(file, path: filePath, rank: entry.rank, stepsCompleted: stepsCompleted)
        return (file, filePath)
    }

    /// A rank file must say it is rank `rank`'s and that it holds the state after `stepsCompleted` steps.
    static func checkMetadata(_ file: SafeTensors, path: String, rank: Int, stepsCompleted: Int) throws {
        guard file.metadata["rank"] == String(rank) else {
            throw Failure.inconsistent(path, "metadata rank is \(file.metadata["rank"] ?? "missing"), expected \(rank)")
        }
        guard file.metadata["steps_completed"] == String(stepsCompleted) else {
            throw Failure.inconsistent(path, "rank \(rank) has steps_completed \(file.metadata["steps_completed"] ?? "missing"), "
                                       + "the checkpoint \(stepsCompleted): the ranks disagree on steps")
        }
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

    /// The manifest of the checkpoint in `directory`, after checking that every rank file agrees with it.
    public static func readManifest(_ directory: String) throws -> Manifest {
        let m = try decodeManifest(directory)
        for entry in m.ranks { _ = try checkedRankFile(entry, directory: directory, stepsCompleted: m.stepsCompleted) }
        return m
    }

    /// The manifest as written, checked for its format and its list of ranks (not against the rank files).
    static func decodeManifest(_ directory: String) throws -> Manifest {
        let manifestPath = path(directory, manifestFile)
        let bytes: [UInt8]
        do { bytes = try InputFile.bytes(manifestPath, limit: manifestLimit) } catch let e as InputFileError {
            var isDirectory: ObjCBool = false
            if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
                throw Failure.unreadable(directory, "no such directory")
            }
            if !isDirectory.boolValue { throw Failure.unreadable(directory, "is a file, not a checkpoint directory") }
            if e.problem == "no such file" {
                throw Failure.inconsistent(manifestPath, "missing (the manifest is written last, once every rank file is complete)")
            }
            throw Failure.unreadable(manifestPath, e.problem)
        }
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        struct Format: Decodable { var format: String }
        guard let f = try? d.decode(Format.self, from: Data(bytes)) else {
            throw Failure.unreadable(manifestPath, "not a checkpoint manifest (no JSON object with a format field)")
        }
        guard f.format == format else { throw Failure.unreadable(manifestPath, "format \(f.format), expected \(format)") }
        let m: Manifest
        do { m = try d.decode(Manifest.self, from: Data(bytes)) } catch {
            throw Failure.unreadable(manifestPath, "malformed manifest: \(error)")
        }
        // The manifest is input like a topology file: its topology must validate before anything is sized by it.
        do { try m.topology.validate() } catch { throw Failure.inconsistent(manifestPath, "its topology is invalid: \(error)") }
        guard m.topology.mode == .compute else {
            throw Failure.inconsistent(manifestPath, "its topology is mode \(m.topology.mode.rawValue); checkpoints hold compute-mode parameters")
        }
        guard (0...mostSteps).contains(m.stepsCompleted) else {
            throw Failure.inconsistent(manifestPath, "steps_completed \(m.stepsCompleted) is not in 0…\(mostSteps)")
        }
        guard m.ranks.map(\.rank) == Array(0..<m.topology.ranks) else {
            throw Failure.inconsistent(manifestPath, "lists ranks \(m.ranks.map(\.rank)), expected 0…\(m.topology.ranks - 1)")
        }
        return m
    }

    /// Writes the manifest of the checkpoint in `directory`, after every rank wrote its file: each rank file's size
    /// and SHA-256 as they are on disk now, refusing a rank file that does not hold `stepsCompleted` steps.
    static func writeManifest(directory: String, topology: Topology, stepsCompleted: Int) throws {
        let files = try (0..<topology.ranks).map { r -> Manifest.RankFile in
            let filePath = path(directory, rankFile(r))
            let bytes: [UInt8]
            do { bytes = try InputFile.bytes(filePath) } catch let e as InputFileError {
                throw Failure.inconsistent(filePath, "rank \(r)'s file: \(e.problem)")
            }
            let file: SafeTensors
            do { file = try SafeTensors(bytes: bytes) } catch { throw Failure.unreadable(filePath, "\(error)") }
            try checkMetadata(file, path: filePath, rank: r, stepsCompleted: stepsCompleted)
            return Manifest.RankFile(rank: r, file: rankFile(r), chunks: topology.layout.chunks(onRank: r), bytes: bytes.count,
                                     sha256: SHA256.hex(bytes))
        }
        let m = Manifest(format: format, stepsCompleted: stepsCompleted, topology: topology, ranks: files)
        let e = JSONEncoder()
        e.keyEncodingStrategy = .convertToSnakeCase
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(Array(try e.encode(m)), to: path(directory, manifestFile))
    }

    /// Whether `topology` can resume from the checkpoint in `directory`: every file agrees with the manifest and the
    /// manifest's model and pipeline are the run's. For a command line, before it starts any process.
    public static func checkResumable(directory: String, topology: Topology) throws {
        guard topology.mode == .compute else { throw Failure.incompatible("checkpoints hold model parameters: use mode compute") }
        try checkCompatible(try readManifest(try resolve(directory)).topology, topology)
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
        let directory = try resolve(directory)
        let manifest = try decodeManifest(directory)
        var merged = SafeTensors()
        var all: [String: Tensor] = [:]
        for r in manifest.ranks {
            let (file, _) = try checkedRankFile(r, directory: directory, stepsCompleted: manifest.stepsCompleted)
            for n in file.names where !n.hasPrefix("adam.") { all[n] = try file.entries[n]!.floats() }
        }
        for spec in ParameterNames.all(config: manifest.topology.modelConfig) {
            guard let t = all[spec.name] else { throw Failure.unreadable(directory, "no rank file holds \(spec.name)") }
            merged.add(spec.name, t)
        }
        merged.metadata = ["steps_completed": String(manifest.stepsCompleted), "source": "attnres merge"]
        try AtomicFile.write(try merged.serialized(), to: output)
        return merged.names.count
    }
}

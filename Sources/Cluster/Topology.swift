import Model
import Foundation
import Pipeline
import Yams

/// Whether a run does real arithmetic or only moves correctly shaped tensors (DESIGN §1).
public enum RunMode: String, Codable, Sendable, CaseIterable { case shape, compute }

/// Which ZeroMQ transport the data links use.
public enum TransportKind: String, Codable, Sendable, CaseIterable { case ipc, tcp }

/// Where one rank listens for its data links (tcp only).
public struct RankAddress: Codable, Sendable, Equatable {
    public var host: String
    /// 0 = let the kernel pick a free port.
    public var port: Int
}

/// A validated topology file: the run configuration a coordinator hands to its workers.
public struct Topology: Codable, Sendable, Equatable {
    public var name = "unnamed"
    public var mode: RunMode = .shape
    public var seed = 1
    public var steps = 2
    public var layers = 32, hidden = 64, heads = 4, seq = 32, vocab = 256
    public var residual: ResidualKind = .block
    public var blocks = 8
    public var cache: CachePolicy = .crossStage
    public var ranks = 4, virtualStages = 2
    public var schedule: ScheduleKind = .interleaved1F1B
    public var microbatches = 8, microbatchSize = 2
    /// Megatron-LM's `microbatch_group_size_per_vp_stage` for `interleaved-1f1b` (`pipeline.microbatch_group`);
    /// nil = ranks, Megatron's default.
    public var microbatchGroup: Int?
    /// AdamW learning rate (compute mode); the same default as `attnres train`.
    public var learningRate: Float = 3e-3
    public var transport: TransportKind = .ipc
    /// The coordinator's control endpoint; nil = a fresh ipc path (or a free loopback port for tcp).
    public var coordinator: String?
    /// Per-rank data addresses for tcp; empty = 127.0.0.1 with kernel-chosen ports.
    public var addresses: [RankAddress] = []
    /// `security: {curve: DIR}`: the CURVE key directory (absolute; the file gives it relative to itself) that turns
    /// on authenticated, encrypted control and data links (CurveKeys, docs/protocol.md "Authentication"); nil = plain.
    public var curveDirectory: String?
    /// The device and links `attnres simulate` prices this pipeline on (the `hardware:` key: a profile file's path,
    /// relative to the topology file, or the profile's keys inline); nil = none given. Runs ignore it.
    public var hardware: HardwareProfile?
    /// Where the file came from (for error messages).
    public var source = "<built-in>"

    public init() {}

    public var layout: Layout { Layout(ranks: ranks, virtualStages: virtualStages, layers: layers) }

    public var residualConfig: ResidualConfig { ResidualConfig(kind: residual, blocks: blocks, cache: cache) }

    public var trafficConfig: TrafficConfig {
        var c = TrafficConfig(layout: layout, residual: residualConfig, schedule: schedule, microbatches: microbatches,
                              microbatchSize: microbatchSize, seq: seq, hidden: hidden)
        c.microbatchGroup = microbatchGroup
        return c
    }

    /// The schedule every rank runs (one place that passes every schedule key).
    public func makeSchedule() throws -> Schedule {
        try Schedule(kind: schedule, layout: layout, microbatches: microbatches, microbatchGroup: microbatchGroup)
    }

    /// The same schedule, generated per rank as it is read rather than stored (for replays at scale).
    public func makeScheduleProgram() throws -> ScheduleProgram {
        try ScheduleProgram(kind: schedule, layout: layout, microbatches: microbatches, microbatchGroup: microbatchGroup)
    }
}

/// A topology problem, naming the file, the key (with its line when known) and what is wrong.
public struct TopologyError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let key: String
    public let line: Int?
    public let problem: String

    public var description: String {
        "\(file)\(line.map { ":\($0)" } ?? ""): \(key): \(problem)"
    }
}

extension Topology {
    /// The default topology of `make run` (same text as topologies/local-4x2.yaml).
    public static let embeddedDefaultYAML = """
    # 4 ranks × 2 virtual stages, Block AttnRes with 8 blocks, cross-stage cache (the paper's Figure 3 setting).
    name: local-4x2
    mode: shape
    seed: 1
    steps: 2
    model: {layers: 32, hidden: 64, heads: 4, seq: 32, vocab: 256}
    residual: {kind: block, blocks: 8}
    cache: cross-stage
    pipeline: {ranks: 4, virtual: 2, schedule: interleaved-1f1b, microbatches: 8, microbatch_size: 2}
    transport: ipc
    """

    /// Loads and validates a topology file; `nil` path means the embedded default.
    public static func load(path: String?) throws -> (Topology, Set<String>) {
        guard let path else { return try parse(yaml: embeddedDefaultYAML, source: "<embedded local-4x2>") }
        let text: String
        do { text = try InputFile.text(path) } catch let e as InputFileError {
            throw TopologyError(file: path, key: "(file)", line: nil, problem: e.problem)
        }
        return try parse(yaml: text, source: path)
    }

    /// Parses YAML into a topology; returns it with the set of keys the file set. Not yet validated as a whole.
    public static func parse(yaml: String, source: String) throws -> (Topology, Set<String>) {
        try YAMLSafety.check(yaml, source: source)
        let root: Node?
        do { root = try Yams.compose(yaml: yaml) } catch {
            throw TopologyError(file: source, key: "(yaml)", line: nil, problem: "not valid YAML: \(QuotedValue.clip(lines: "\(error)"))")
        }
        guard let root, let top = root.mapping else {
            throw TopologyError(file: source, key: "(top level)", line: root?.mark?.line, problem: "must be a mapping of keys")
        }
        var t = Topology()
        t.source = source
        var seen: Set<String> = []
        let p = Parser(file: source)
        try p.each(top, path: "", known: ["name", "mode", "seed", "steps", "lr", "model", "residual", "cache", "pipeline",
                                         "transport", "coordinator", "security", "hardware"]) { key, node in
            seen.insert(key)
            switch key {
            case "name": t.name = try p.string(node, key)
            case "mode": t.mode = try p.choice(node, key, RunMode.self)
            case "seed": t.seed = try p.int(node, key, min: 0)
            case "steps": t.steps = try p.int(node, key, min: 1)
            case "cache": t.cache = try p.choice(node, key, CachePolicy.self)
            case "coordinator":
                let endpoint = try p.string(node, key)
                if let problem = Self.endpointProblem(endpoint) { throw p.bad(node, key, "'\(Parser.clip(endpoint))': \(problem)") }
                t.coordinator = endpoint
            case "security": t.curveDirectory = try p.security(node, relativeTo: source)
            case "hardware": t.hardware = try Topology.hardware(node, parser: p, topologyFile: source)
            case "lr":
                guard let v = node.scalar.flatMap({ Float($0.string) }), v > 0, v.isFinite else {
                    throw p.bad(node, key, "must be a positive number")
                }
                t.learningRate = v
            case "model":
                try p.each(try p.mapping(node, key), path: "model.", known: ["layers", "hidden", "heads", "seq", "vocab"]) { k, v in
                    seen.insert("model.\(k)")
                    switch k {
                    case "layers": t.layers = try p.int(v, "model.layers", min: 1)
                    case "hidden": t.hidden = try p.int(v, "model.hidden", min: 1)
                    case "heads": t.heads = try p.int(v, "model.heads", min: 1)
                    case "seq": t.seq = try p.int(v, "model.seq", min: 1)
                    default: t.vocab = try p.int(v, "model.vocab", min: 2)
                    }
                }
            case "residual":
                if let s = node.scalar?.string {
                    guard let kind = ResidualKind(rawValue: s) else { throw p.bad(node, key, "'\(Parser.clip(s))' is not one of \(ResidualKind.allCases.map(\.rawValue))") }
                    t.residual = kind
                    seen.insert("residual.kind")
                } else {
                    try p.each(try p.mapping(node, key), path: "residual.", known: ["kind", "blocks"]) { k, v in
                        seen.insert("residual.\(k)")
                        if k == "kind" { t.residual = try p.choice(v, "residual.kind", ResidualKind.self) } else { t.blocks = try p.int(v, "residual.blocks", min: 1) }
                    }
                }
            case "pipeline":
                try p.each(try p.mapping(node, key), path: "pipeline.", known: ["ranks", "virtual", "schedule", "microbatches", "microbatch_size", "microbatch_group"]) { k, v in
                    seen.insert("pipeline.\(k)")
                    switch k {
                    case "ranks": t.ranks = try p.int(v, "pipeline.ranks", min: 1)
                    case "virtual": t.virtualStages = try p.int(v, "pipeline.virtual", min: 1)
                    case "schedule": t.schedule = try p.choice(v, "pipeline.schedule", ScheduleKind.self)
                    case "microbatches": t.microbatches = try p.int(v, "pipeline.microbatches", min: 1)
                    case "microbatch_group": t.microbatchGroup = try p.int(v, "pipeline.microbatch_group", min: 1)
                    default: t.microbatchSize = try p.int(v, "pipeline.microbatch_size", min: 1)
                    }
                }
            case "transport":
                if node.scalar != nil {
                    t.transport = try p.choice(node, key, TransportKind.self)
                } else {
                    try p.each(try p.mapping(node, key), path: "transport.", known: ["kind", "ranks"]) { k, v in
                        seen.insert("transport.\(k)")
                        if k == "kind" { t.transport = try p.choice(v, "transport.kind", TransportKind.self); return }
                        guard let seq = v.sequence else { throw p.bad(v, "transport.ranks", "must be a list of {host, port}") }
                        t.addresses = try seq.enumerated().map { i, item in
                            var a = RankAddress(host: "127.0.0.1", port: 0)
                            try p.each(try p.mapping(item, "transport.ranks[\(i)]"), path: "transport.ranks[\(i)].", known: ["host", "port"]) { kk, vv in
                                if kk == "host" { a.host = try p.string(vv, "transport.ranks[\(i)].host") } else {
                                    a.port = try p.int(vv, "transport.ranks[\(i)].port", min: 0, max: 65535)
                                }
                            }
                            return a
                        }
                    }
                }
            default: break
            }
        }
        if seen.contains("residual.blocks") && t.residual != .block {
            throw TopologyError(file: source, key: "residual.blocks", line: nil,
                                problem: "only residual kind 'block' takes blocks (kind is '\(t.residual.rawValue)')")
        }
        return (t, seen)
    }

    /// The `hardware:` key: a path (relative to the topology file's folder; to the working directory for a topology
    /// that is not a file) whose profile errors name that file, or an inline mapping with a profile file's keys
    /// whose errors name `hardware.…` in the topology file.
    static func hardware(_ node: Node, parser p: Parser, topologyFile: String) throws -> HardwareProfile {
        guard let path = node.scalar?.string else {
            return try HardwareProfile.parse(node, parser: p, prefix: "hardware.", name: "hardware of \(topologyFile)")
        }
        guard !path.isEmpty else { throw p.bad(node, "hardware", "must be a profile file's path or a mapping of its keys, got ''") }
        let folder = topologyFile.hasPrefix("<") ? "" : (topologyFile as NSString).deletingLastPathComponent
        let resolved = path.hasPrefix("/") || folder.isEmpty ? path : (folder as NSString).appendingPathComponent(path)
        do { return try HardwareProfile.load(path: resolved) } catch let e as TopologyError where e.key == "(file)" && e.file == resolved {
            throw p.bad(node, "hardware", "profile '\(Parser.clip(path))' (\(resolved)): \(e.problem)")
        }
    }

    /// Checks the topology as a whole. `overridden` maps a key to the flag that set it, for the message.
    /// Every size is computed with overflow checks, and a topology whose `TopologyFootprint` exceeds `memoryBytes`
    /// is rejected naming the size: its bookkeeping always, its tensors (and model) when `holdsTensors` (commands
    /// that start processes; predict and schedule hold no tensor).
    public func validate(overridden: [String: String] = [:], memoryBytes: Int = TopologyFootprint.physicalMemory,
                         holdsTensors: Bool = true) throws {
        let fail = failure(overridden)
        try validateValues(fail)
        guard ranks >= 2 else { throw fail("pipeline.ranks", "a pipeline needs at least 2 ranks, got \(ranks)") }
        guard ranks <= 512 else { throw fail("pipeline.ranks", "at most 512 worker processes, got \(ranks)") }
        guard let chunks = TopologyFootprint.product([ranks, virtualStages]) else {
            throw fail("pipeline.virtual", "ranks·virtual = \(ranks)·\(virtualStages) chunks overflows a 64-bit integer")
        }
        guard layers >= chunks else {
            throw fail("model.layers", "L = \(layers) layers cannot fill ranks·virtual = \(ranks)·\(virtualStages) = \(chunks) chunks (need L ≥ ranks·virtual)")
        }
        try validateBlocks(fail)
        if mode == .compute { try validateSeq(fail, corpusBytes: SyntheticCorpus.defaultLength) }
        try validateFootprint(fail, memoryBytes: memoryBytes, holdsTensors: holdsTensors)
        try validateHeads(fail, overridden)
        do { try Schedule.validate(schedule, layout: layout, microbatches: microbatches, microbatchGroup: microbatchGroup) } catch let e as ScheduleError {
            let key: String
            switch e {
            case .microbatchesRefused(_, _, _, let group):
                // The group is to blame when only it was set by a flag, or when it alone cannot hold P ≤ N ≤ m.
                let groupAtFault = group.map { $0 < ranks || $0 > microbatches } ?? false
                key = (groupAtFault || (overridden["pipeline.microbatch_group"] != nil && overridden["pipeline.microbatches"] == nil))
                    ? "pipeline.microbatch_group" : "pipeline.microbatches"
            case .microbatchGroupNeedsMegatron: key = "pipeline.microbatch_group"
            case .noMicrobatches: key = "pipeline.microbatches"
            default: key = "pipeline.schedule"
            }
            throw fail(key, e.description)
        }
        try validateLearningRate(fail)
        if transport == .tcp, !addresses.isEmpty, addresses.count != ranks {
            throw fail("transport.ranks", "lists \(addresses.count) addresses for \(ranks) ranks")
        }
        if transport == .ipc, !addresses.isEmpty {
            throw fail("transport.ranks", "per-rank addresses are for transport kind tcp")
        }
    }
}

extension Topology {
    /// Checks what one process training the whole model (`attnres train`, `bench model`) needs of the topology:
    /// the value ranges, blocks ≤ layers, a sequence that fits the corpus (`corpusBytes`; nil when the corpus is a
    /// file read later, whose `BatchSource` checks it), the compute-mode memory rule of `TopologyFootprint` for the
    /// model on one chunk, heads dividing hidden and the learning rate. The pipeline keys are not looked at.
    public func validateModel(overridden: [String: String] = [:], memoryBytes: Int = TopologyFootprint.physicalMemory,
                              corpusBytes: Int? = SyntheticCorpus.defaultLength) throws {
        var one = self
        one.ranks = 1; one.virtualStages = 1; one.mode = .compute
        let fail = failure(overridden)
        try one.validateValues(fail)
        try one.validateBlocks(fail)
        if let corpusBytes { try one.validateSeq(fail, corpusBytes: corpusBytes) }
        try one.validateFootprint(fail, memoryBytes: memoryBytes, holdsTensors: true)
        try one.validateHeads(fail, overridden)
        try one.validateLearningRate(fail)
    }

    /// The error for `key`, naming the flag that set it when a flag did.
    func failure(_ overridden: [String: String]) -> (String, String) -> TopologyError {
        { key, problem in TopologyError(file: source, key: key + (overridden[key].map { " (set by \($0))" } ?? ""), line: nil, problem: problem) }
    }

    /// Every count at least its least meaningful value (a file's keys are checked as parsed; flags are not).
    func validateValues(_ fail: (String, String) -> TopologyError) throws {
        for (key, value, least) in [("model.layers", layers, 1), ("model.hidden", hidden, 1), ("model.heads", heads, 1),
                                    ("model.seq", seq, 1), ("model.vocab", vocab, 2), ("pipeline.virtual", virtualStages, 1),
                                    ("pipeline.microbatches", microbatches, 1), ("pipeline.microbatch_size", microbatchSize, 1),
                                    ("steps", steps, 1), ("residual.blocks", blocks, 1), ("seed", seed, 0)] where value < least {
            throw fail(key, "must be ≥ \(least), got \(value)")
        }
    }

    /// Block residual partitions the layers into blocks, so there cannot be more blocks than layers.
    func validateBlocks(_ fail: (String, String) -> TopologyError) throws {
        if residual == .block {
            guard blocks <= layers else { throw fail("residual.blocks", "\(blocks) blocks > \(layers) layers") }
        }
    }

    /// A batch takes windows of seq + 1 bytes at random offsets of the corpus, so the corpus must be longer.
    func validateSeq(_ fail: (String, String) -> TopologyError, corpusBytes: Int) throws {
        guard seq < corpusBytes - 1 else {
            throw fail("model.seq", "a sequence of \(seq) tokens needs a corpus of more than seq + 1 bytes; the synthetic corpus has "
                       + "\(corpusBytes) (at most \(corpusBytes - 2))")
        }
    }

    /// The memory rule of `TopologyFootprint`: the bookkeeping always, the tensors when `holdsTensors`.
    func validateFootprint(_ fail: (String, String) -> TopologyError, memoryBytes: Int, holdsTensors: Bool) throws {
        let footprint: TopologyFootprint
        do { footprint = try TopologyFootprint(self) } catch let o as TopologyFootprint.Overflow { throw fail(o.key, o.problem) }
        if footprint.bookkeepingBytes > memoryBytes {
            throw fail(footprint.bookkeepingKey, "the schedule, hop plan and per-layer tables alone need \(Self.bytes(footprint.bookkeepingBytes)) "
                       + "of memory, more than this machine's \(Self.bytes(memoryBytes))")
        }
        if holdsTensors, footprint.requiredBytes > memoryBytes {
            throw fail(footprint.key, "a run needs at least \(Self.bytes(footprint.requiredBytes)) of memory, more than this machine's "
                       + "\(Self.bytes(memoryBytes)): \(footprint.rule)")
        }
    }

    /// Attention splits the hidden size evenly across the heads.
    func validateHeads(_ fail: (String, String) -> TopologyError, _ overridden: [String: String]) throws {
        // The divisibility error belongs to the value the command line changed, when it changed only one of the two.
        let divisibilityKey = overridden["model.hidden"] != nil && overridden["model.heads"] == nil ? "model.hidden" : "model.heads"
        guard hidden % heads == 0 else { throw fail(divisibilityKey, "hidden \(hidden) is not divisible by \(heads) heads") }
    }

    /// AdamW needs a finite positive step size.
    func validateLearningRate(_ fail: (String, String) -> TopologyError) throws {
        guard learningRate > 0, learningRate.isFinite else { throw fail("lr", "must be a positive number, got \(learningRate)") }
    }

    /// What is wrong with a ZeroMQ endpoint the coordinator binds, nil when it has the form `tcp://HOST:PORT`
    /// (PORT in 1…65535 or `*`, any free port) or `ipc://PATH` (at most 107 bytes: a Unix socket's sun_path).
    public static func endpointProblem(_ endpoint: String) -> String? {
        if endpoint.hasPrefix("tcp://") {
            let rest = endpoint.dropFirst("tcp://".count)
            guard let colon = rest.lastIndex(of: ":") else { return "a tcp endpoint needs a port: tcp://HOST:PORT" }
            let host = rest[..<colon], port = rest[rest.index(after: colon)...]
            guard !host.isEmpty else { return "a tcp endpoint needs a host: tcp://HOST:PORT" }
            if port == "*" { return nil }
            guard let n = Int(port), (1...65535).contains(n) else {
                return "the port must be in 1…65535 or *, got '\(Parser.clip(String(port)))'"
            }
            return nil
        }
        if endpoint.hasPrefix("ipc://") {
            let path = endpoint.dropFirst("ipc://".count)
            guard !path.isEmpty else { return "an ipc endpoint needs a path: ipc://PATH" }
            guard path.utf8.count <= 107 else { return "the ipc path has \(path.utf8.count) bytes; a Unix socket path holds at most 107" }
            return nil
        }
        return "must be tcp://HOST:PORT (PORT in 1…65535 or *) or ipc://PATH"
    }

    /// A byte count for a message: readable and exact.
    static func bytes(_ n: Int) -> String { "\(Report.human(n)) (\(Report.grouped(n)) B)" }
}

/// Small typed accessors over a Yams node tree that name the key and line on every error.
struct Parser {
    let file: String

    /// A value quoted in a message (see `QuotedValue`).
    static func clip(_ text: String) -> String { QuotedValue.clip(text) }

    func bad(_ node: Node, _ key: String, _ problem: String) -> TopologyError {
        TopologyError(file: file, key: key, line: node.mark.map { $0.line }, problem: problem)
    }

    func mapping(_ node: Node, _ key: String) throws -> Node.Mapping {
        guard let m = node.mapping else { throw bad(node, key, "must be a mapping") }
        return m
    }

    func each(_ m: Node.Mapping, path: String, known: [String], _ body: (String, Node) throws -> Void) throws {
        var seen: Set<String> = []
        for (k, v) in m {
            guard let key = k.scalar?.string else { throw bad(k, path + "?", "keys must be plain strings") }
            guard known.contains(key) else {
                throw bad(k, path + Self.clip(key), "unknown key (known here: \(known.joined(separator: ", ")))")
            }
            guard seen.insert(key).inserted else { throw bad(k, path + key, "duplicate key") }
            try body(key, v)
        }
    }

    /// `security: {curve: DIR}`: the key directory, resolved against the directory of the file `source`.
    func security(_ node: Node, relativeTo source: String) throws -> String {
        var dir: String?
        try each(try mapping(node, "security"), path: "security.", known: ["curve"]) { _, v in
            let d = try string(v, "security.curve")
            guard !d.isEmpty else { throw bad(v, "security.curve", "must name the key directory (`attnres keys generate DIR --ranks P`)") }
            dir = d
        }
        guard let dir else { throw bad(node, "security", "must be {curve: DIR}") }
        let base = source.hasPrefix("<") ? URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
            : URL(fileURLWithPath: source).deletingLastPathComponent()
        return URL(fileURLWithPath: dir, relativeTo: base).standardizedFileURL.path
    }

    func string(_ node: Node, _ key: String) throws -> String {
        guard let s = node.scalar?.string else { throw bad(node, key, "must be a string") }
        return s
    }

    func int(_ node: Node, _ key: String, min: Int, max: Int = Int.max) throws -> Int {
        guard let s = node.scalar?.string, let v = Int(s) else {
            throw bad(node, key, "must be an integer, got \(node.scalar.map { "'\(Self.clip($0.string))'" } ?? "a \(node.kindName)")")
        }
        guard v >= min, v <= max else { throw bad(node, key, "must be \(max == Int.max ? "≥ \(min)" : "in \(min)…\(max)"), got \(v)") }
        return v
    }

    func choice<T: RawRepresentable & CaseIterable>(_ node: Node, _ key: String, _ type: T.Type) throws -> T where T.RawValue == String {
        let s = try string(node, key)
        guard let v = T(rawValue: s) else {
            throw bad(node, key, "'\(Self.clip(s))' is not one of \(T.allCases.map(\.rawValue).joined(separator: " | "))")
        }
        return v
    }
}

extension Node {
    var kindName: String {
        switch self {
        case .mapping: return "mapping"
        case .sequence: return "sequence"
        case .scalar: return "scalar"
        case .alias: return "alias"
        }
    }
}

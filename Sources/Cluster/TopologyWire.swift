import Model
import Pipeline
import Wire

/// The topology as the `run` message and checkpoint manifests carry it: the topology file's own keys and nesting
/// (README "Topologies"), so a worker written from docs/protocol.md reads the same names a user writes.
///
///     {"name", "mode", "seed", "steps", "lr",
///      "model": {"layers", "hidden", "heads", "seq", "vocab"},
///      "residual": {"kind", "blocks"},            // blocks only for kind "block"
///      "cache",
///      "pipeline": {"ranks", "virtual", "schedule", "microbatches", "microbatch_size", "microbatch_group"},
///                                                 // microbatch_group optional (interleaved-1f1b only)
///      "transport": {"kind", "ranks": [{"host", "port"}]},
///      "coordinator", "source",                   // optional
///      "security": {"curve": DIR},                // optional: CURVE on (DIR absolute, the coordinator's)
///      "hardware": {…}}                           // optional: the resolved profile (HardwareWire.swift)
extension Topology {
    enum WireKey: String, CodingKey {
        case name, mode, seed, steps, lr, model, residual, cache, pipeline, transport, coordinator, source, security, hardware
    }
    enum SecurityKey: String, CodingKey { case curve }
    enum ModelKey: String, CodingKey { case layers, hidden, heads, seq, vocab }
    enum ResidualKey: String, CodingKey { case kind, blocks }
    enum PipelineKey: String, CodingKey {
        case ranks, virtual, schedule, microbatches, microbatchSize = "microbatch_size"
        /// The same key as a decoder with `.convertFromSnakeCase` (checkpoint manifests) presents it.
        case microbatchSizeConverted = "microbatchSize"
        case microbatchGroup = "microbatch_group"
        case microbatchGroupConverted = "microbatchGroup"
    }
    enum TransportKey: String, CodingKey { case kind, ranks }

    public init(from decoder: Decoder) throws {
        self.init()
        let c = try decoder.container(keyedBy: WireKey.self)
        name = try c.decode(String.self, forKey: .name)
        mode = try c.decode(RunMode.self, forKey: .mode)
        seed = try c.decode(Int.self, forKey: .seed)
        steps = try c.decode(Int.self, forKey: .steps)
        learningRate = try c.decode(Float.self, forKey: .lr)
        let m = try c.nestedContainer(keyedBy: ModelKey.self, forKey: .model)
        layers = try m.decode(Int.self, forKey: .layers)
        hidden = try m.decode(Int.self, forKey: .hidden)
        heads = try m.decode(Int.self, forKey: .heads)
        seq = try m.decode(Int.self, forKey: .seq)
        vocab = try m.decode(Int.self, forKey: .vocab)
        let r = try c.nestedContainer(keyedBy: ResidualKey.self, forKey: .residual)
        residual = try r.decode(ResidualKind.self, forKey: .kind)
        if residual == .block { blocks = try r.decode(Int.self, forKey: .blocks) }
        cache = try c.decode(CachePolicy.self, forKey: .cache)
        let p = try c.nestedContainer(keyedBy: PipelineKey.self, forKey: .pipeline)
        ranks = try p.decode(Int.self, forKey: .ranks)
        virtualStages = try p.decode(Int.self, forKey: .virtual)
        schedule = try p.decode(ScheduleKind.self, forKey: .schedule)
        microbatches = try p.decode(Int.self, forKey: .microbatches)
        microbatchSize = try p.decodeIfPresent(Int.self, forKey: .microbatchSizeConverted) ?? p.decode(Int.self, forKey: .microbatchSize)
        microbatchGroup = try p.decodeIfPresent(Int.self, forKey: .microbatchGroupConverted) ?? p.decodeIfPresent(Int.self, forKey: .microbatchGroup)
        let t = try c.nestedContainer(keyedBy: TransportKey.self, forKey: .transport)
        transport = try t.decode(TransportKind.self, forKey: .kind)
        addresses = try t.decodeIfPresent([RankAddress].self, forKey: .ranks) ?? []
        coordinator = try c.decodeIfPresent(String.self, forKey: .coordinator)
        source = try c.decodeIfPresent(String.self, forKey: .source) ?? "<control message>"
        if c.contains(.security) {
            curveDirectory = try c.nestedContainer(keyedBy: SecurityKey.self, forKey: .security).decodeIfPresent(String.self, forKey: .curve)
        }
        hardware = try c.decodeIfPresent(HardwareProfile.self, forKey: .hardware)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: WireKey.self)
        try c.encode(name, forKey: .name)
        try c.encode(mode, forKey: .mode)
        try c.encode(seed, forKey: .seed)
        try c.encode(steps, forKey: .steps)
        try c.encode(learningRate, forKey: .lr)
        var m = c.nestedContainer(keyedBy: ModelKey.self, forKey: .model)
        try m.encode(layers, forKey: .layers); try m.encode(hidden, forKey: .hidden); try m.encode(heads, forKey: .heads)
        try m.encode(seq, forKey: .seq); try m.encode(vocab, forKey: .vocab)
        var r = c.nestedContainer(keyedBy: ResidualKey.self, forKey: .residual)
        try r.encode(residual, forKey: .kind)
        if residual == .block { try r.encode(blocks, forKey: .blocks) }
        try c.encode(cache, forKey: .cache)
        var p = c.nestedContainer(keyedBy: PipelineKey.self, forKey: .pipeline)
        try p.encode(ranks, forKey: .ranks); try p.encode(virtualStages, forKey: .virtual); try p.encode(schedule, forKey: .schedule)
        try p.encode(microbatches, forKey: .microbatches); try p.encode(microbatchSize, forKey: .microbatchSize)
        try p.encodeIfPresent(microbatchGroup, forKey: .microbatchGroup)
        var t = c.nestedContainer(keyedBy: TransportKey.self, forKey: .transport)
        try t.encode(transport, forKey: .kind)
        try t.encode(addresses, forKey: .ranks)
        try c.encodeIfPresent(coordinator, forKey: .coordinator)
        try c.encode(source, forKey: .source)
        if let curveDirectory {
            var sec = c.nestedContainer(keyedBy: SecurityKey.self, forKey: .security)
            try sec.encode(curveDirectory, forKey: .curve)
        }
        try c.encodeIfPresent(hardware, forKey: .hardware)
    }

    /// The largest frame any data message of this topology can have, for every residual variant on the same model
    /// shape (`attnres compare`): a tensor frame of b·s·d float32, or a header of at most L + 2 descriptors (a hop
    /// carries at most b_0 … b_L, or completed blocks plus one partial). The data inbox's ZMQ_MAXMSGSIZE.
    public var largestDataFrameBytes: Int {
        let payload = microbatchSize.multipliedReportingOverflow(by: seq).partialValue.multipliedReportingOverflow(by: hidden).partialValue
        let header = Frame.fixedHeaderBytes + Frame.descriptorBytes * min(Frame.maxTensors, layers + 2)
        return max(payload.multipliedReportingOverflow(by: DType.float32.size).partialValue, header)
    }
}

import Foundation
import Model
#if canImport(Glibc)
import Glibc
#endif

/// How big a run of a topology is, computed with overflow checks so that absurd values are an error naming the
/// key instead of a trap somewhere inside the schedule, the traffic model or a worker.
///
/// The memory rule (`Topology.validate(memoryBytes:holdsTensors:)`), all on the one machine a local cluster runs on:
/// - every command (predict and schedule too): the bookkeeping, that is the schedule, 2·chunks·microbatches compute
///   actions with their sends and receives at `bytesPerScheduledAction` each, and the hop plan, hops·tensors per hop
///   entries at `bytesPerPlannedTensor` each, and per-layer tables, `bytesPerLayer` per sublayer; the per-step
///   payload must also fit a 64-bit byte count;
/// - shape mode streams tensors, so the bound is one hop message — at most `maxTensorsPerHop` b·s·d·4-byte
///   tensors — held twice (the sender's copy and the receiver's);
/// - compute mode also holds the whole model: 16 bytes per parameter (weights, gradients, AdamW m and v) plus the
///   activations of every microbatch of a step saved for the backward (`activationTensorsPerLayer` b·s·d tensors
///   and one b·heads·s·s attention-probability tensor per sublayer, for all microbatches: GPipe's worst case).
public struct TopologyFootprint: Sendable, Equatable {
    /// Bytes of one b·s·d float tensor.
    public let tensorBytes: Int
    /// An upper bound on the tensors one hop carries: h (standard), b_0…b_N plus a partial (block), every
    /// earlier layer output (full).
    public let maxTensorsPerHop: Int
    /// Bytes the schedule and the hop plan take, which every command holds.
    public let bookkeepingBytes: Int
    /// Bytes the memory rule requires for a run of this topology in its mode (bookkeeping included).
    public let requiredBytes: Int
    /// What `requiredBytes` counts, for the message.
    public let rule: String
    /// The key behind the largest part of `requiredBytes` (its largest factor), which an error names.
    public let key: String
    /// The key behind the larger part of `bookkeepingBytes`.
    public let bookkeepingKey: String

    static let bytesPerScheduledAction = 256
    static let bytesPerPlannedTensor = 64
    static let bytesPerLayer = 64
    static let activationTensorsPerLayer = 8

    /// This machine's physical memory: sysconf(_SC_PHYS_PAGES) · page size.
    public static var physicalMemory: Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, size > 0 else { return Int.max }
        return product([pages, size]) ?? Int.max
    }

    /// The product of `factors`, or nil when it overflows `Int`.
    public static func product(_ factors: [Int]) -> Int? {
        var p = 1
        for f in factors {
            let (r, overflow) = p.multipliedReportingOverflow(by: f)
            if overflow { return nil }
            p = r
        }
        return p
    }

    /// The sum of `terms`, or nil when it overflows `Int`.
    static func sum(_ terms: [Int]) -> Int? {
        var s = 0
        for t in terms {
            let (r, overflow) = s.addingReportingOverflow(t)
            if overflow { return nil }
            s = r
        }
        return s
    }

    /// A size that cannot be represented: which key to blame and why.
    public struct Overflow: Error { public let key: String; public let problem: String }

    /// The footprint of `t`; the caller has checked every value ≥ 1 and ranks·virtual ≤ layers.
    init(_ t: Topology) throws {
        let bsd = [("pipeline.microbatch_size", t.microbatchSize), ("model.seq", t.seq), ("model.hidden", t.hidden)]
        /// Blames the largest of the named factors (the one most likely mistyped).
        func largest(_ factors: [(String, Int)]) -> String { factors.max { $0.1 < $1.1 }!.0 }
        func blame(_ factors: [(String, Int)], _ what: String) -> Overflow {
            Overflow(key: largest(factors), problem: "\(what) = \(factors.map { String($0.1) }.joined(separator: "·")) overflows a 64-bit byte count")
        }
        guard let tensor = Self.product(bsd.map(\.1) + [4]) else { throw blame(bsd, "one b·s·d tensor, b·s·d·4 bytes") }
        tensorBytes = tensor
        switch t.residual {
        case .standard: maxTensorsPerHop = 1
        case .block: maxTensorsPerHop = Self.sum([t.blocks, 2]) ?? Int.max  // Int.max overflows every product below
        case .full: maxTensorsPerHop = Self.sum([t.layers, 1]) ?? Int.max
        }
        let chunks = t.ranks * t.virtualStages
        let scheduleFactors = [("pipeline.ranks", t.ranks), ("pipeline.virtual", t.virtualStages), ("pipeline.microbatches", t.microbatches)]
        guard let schedule = Self.product([chunks, t.microbatches, 2, Self.bytesPerScheduledAction]) else {
            throw blame(scheduleFactors, "the schedule, ranks·virtual·microbatches·2 actions·\(Self.bytesPerScheduledAction) B")
        }
        let hopKey = t.residual == .full ? "model.layers" : "residual.blocks"
        let planFactors = [("pipeline.ranks", t.ranks), ("pipeline.virtual", t.virtualStages), (hopKey, maxTensorsPerHop)]
        guard let hopPlan = Self.product([max(1, chunks - 1), maxTensorsPerHop, Self.bytesPerPlannedTensor]) else {
            throw blame(planFactors, "the hop plan, hops·tensors per hop·\(Self.bytesPerPlannedTensor) B")
        }
        guard let layerTables = Self.product([t.layers, Self.bytesPerLayer]), let plan = Self.sum([hopPlan, layerTables]),
              let bookkeeping = Self.sum([schedule, plan]) else {
            throw Overflow(key: "model.layers", problem: "per-layer tables of \(t.layers) layers overflow a 64-bit byte count")
        }
        bookkeepingBytes = bookkeeping
        bookkeepingKey = schedule > plan ? largest(scheduleFactors) : hopPlan > layerTables ? largest(planFactors) : "model.layers"
        guard Self.product([2, max(1, chunks - 1), maxTensorsPerHop, tensor, t.microbatches]) != nil else {
            throw blame(bsd + [("pipeline.microbatches", t.microbatches), (hopKey, maxTensorsPerHop)],
                        "the payload of a step, 2·hops·tensors per hop·b·s·d·4 B·microbatches")
        }
        guard let hop = Self.product([maxTensorsPerHop, tensor, 2]) else {
            throw blame(bsd + [(hopKey, maxTensorsPerHop)], "one hop message held twice, b·s·d·4 B·tensors per hop·2")
        }
        let schedulePart = "the schedule, hop plan and per-layer tables (\(Report.human(bookkeeping)))"
        if t.mode == .shape {
            guard let total = Self.sum([bookkeeping, hop]) else { throw blame(bsd, "a shape run's footprint") }
            requiredBytes = total
            key = bookkeeping > hop ? bookkeepingKey : largest(bsd + [(hopKey, maxTensorsPerHop)])
            rule = "shape mode streams tensors: one hop message of up to \(maxTensorsPerHop) b·s·d tensors of \(Report.human(tensor)), "
                + "held by sender and receiver (\(Report.human(hop))), plus \(schedulePart)"
            return
        }
        let d = t.hidden
        let modelFactors = [("model.layers", t.layers), ("model.hidden", d)]
        guard let matrices = Self.product([8, d, d]), let vectors = Self.product([3, d]), let perLayer = Self.sum([matrices, vectors]),
              let layersParameters = Self.product([t.layers, perLayer]),
              let embeddingRows = Self.sum([t.vocab, t.vocab, t.seq]), let embeddings = Self.product([embeddingRows, d]),
              let parameters = Self.sum([layersParameters, embeddings]),
              let modelBytes = Self.product([parameters, 16]) else {
            throw blame(modelFactors + [("model.vocab", t.vocab)], "the model's parameters")
        }
        let probabilities = Self.product([t.microbatchSize, t.heads, t.seq, t.seq, 4])
        guard let probabilities, let saved = Self.product([Self.activationTensorsPerLayer, tensor]),
              let perLayerActivations = Self.sum([saved, probabilities]),
              let activations = Self.product([t.microbatches, t.layers, perLayerActivations]) else {
            throw blame(bsd + [("model.layers", t.layers), ("pipeline.microbatches", t.microbatches)], "a step's saved activations")
        }
        guard let total = Self.sum([modelBytes, activations, hop, bookkeeping]) else {
            throw blame(modelFactors, "a compute run's footprint")
        }
        requiredBytes = total
        // The embedding and the head (2·vocab + seq rows of d) or the layers (L·(8d² + 3d)), whichever is larger,
        // and within it its largest factor: an oversized vocab is blamed on model.vocab, not on model.hidden.
        let modelKey = embeddings > layersParameters
            ? largest([("model.vocab", Self.sum([t.vocab, t.vocab]) ?? Int.max), ("model.seq", t.seq), ("model.hidden", d)])
            : largest(modelFactors)
        let parts = [(modelBytes, modelKey), (activations, largest(bsd + [("model.layers", t.layers)])),
                     (hop, largest(bsd + [(hopKey, maxTensorsPerHop)])), (bookkeeping, bookkeepingKey)]
        key = parts.max { $0.0 < $1.0 }!.1
        rule = "compute mode holds the model, 16 B per parameter (weights, gradients, AdamW m and v: \(Report.human(modelBytes))), "
            + "every microbatch's saved activations (\(Self.activationTensorsPerLayer) b·s·d tensors and the b·heads·s·s attention "
            + "probabilities per sublayer: \(Report.human(activations))), one hop message held twice (\(Report.human(hop))) and \(schedulePart)"
    }
}

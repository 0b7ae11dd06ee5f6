import Numerics

/// What a parameter is, which decides its initialisation and whether AdamW decays it.
public enum ParameterKind: Sendable {
    case embedding, matrix, outputProjection, gain, pseudoQuery
    /// Weight decay applies to rank-2 parameters (embeddings, projections, head), not to gains or pseudo-queries.
    public var decays: Bool { self == .embedding || self == .matrix || self == .outputProjection }
}

/// Name, shape and kind of one parameter. Names are the export names of the issue (docs/model.md).
public struct ParameterSpec: Equatable, Sendable {
    public let name: String
    public let shape: [Int]
    public let kind: ParameterKind
}

/// Canonical parameter names and the chunk owning each.
public enum ParameterNames {
    /// Parameters of layer l (1-based): norm gain, then the sublayer's matrices, then its pseudo-query.
    public static func layer(_ l: Int, config c: ModelConfig) -> [ParameterSpec] {
        let d = c.hidden
        var s = [ParameterSpec(name: "layers.\(l).norm.gain", shape: [d], kind: .gain)]
        if c.isAttention(l) {
            for w in ["wq", "wk", "wv"] { s.append(ParameterSpec(name: "layers.\(l).attn.\(w)", shape: [d, d], kind: .matrix)) }
            s.append(ParameterSpec(name: "layers.\(l).attn.wo", shape: [d, d], kind: .outputProjection))
        } else {
            s.append(ParameterSpec(name: "layers.\(l).mlp.w1", shape: [d, 4 * d], kind: .matrix))
            s.append(ParameterSpec(name: "layers.\(l).mlp.w2", shape: [4 * d, d], kind: .outputProjection))
        }
        if c.usesDepthAttention { s.append(ParameterSpec(name: query(l), shape: [d], kind: .pseudoQuery)) }
        return s
    }

    /// The pseudo-query w_l of layer l (1-based; l = L + 1 is the output attention's).
    public static func query(_ l: Int) -> String { "layers.\(l).query" }

    /// Every parameter of chunk k of `layout`, in canonical order.
    public static func chunk(_ k: Int, layout: ChunkLayout, config c: ModelConfig) -> [ParameterSpec] {
        var s: [ParameterSpec] = []
        if k == 0 {
            s.append(ParameterSpec(name: "embed.weight", shape: [c.vocab, c.hidden], kind: .embedding))
            s.append(ParameterSpec(name: "pos.weight", shape: [c.seq, c.hidden], kind: .embedding))
        }
        for l in layout.layers(ofChunk: k) { s += layer(l, config: c) }
        if k == layout.chunks - 1 {
            if c.usesDepthAttention {
                s.append(ParameterSpec(name: query(c.layers + 1), shape: [c.hidden], kind: .pseudoQuery))
            }
            s.append(ParameterSpec(name: "final_norm.gain", shape: [c.hidden], kind: .gain))
            s.append(ParameterSpec(name: "head.weight", shape: [c.hidden, c.vocab], kind: .matrix))
        }
        return s
    }

    /// Every parameter of the model, in canonical order (independent of the chunking).
    public static func all(config c: ModelConfig) -> [ParameterSpec] {
        chunk(0, layout: try! ChunkLayout(layers: c.layers, chunks: 1), config: c)
    }
}

/// A named, ordered set of tensors: the parameters of some chunks, or gradients / optimizer moments with the same
/// names. Order is the canonical order, so files and reports list parameters identically everywhere.
public struct ParameterSet: Sendable {
    /// Names in canonical order.
    public private(set) var names: [String] = []
    private var storage: [String: Tensor] = [:]
    /// Specs by name (shape and kind).
    public private(set) var specs: [String: ParameterSpec] = [:]

    public init() {}

    /// Initial parameters for the given specs (deterministic per name, see `ParameterInit`).
    public init(initializing specs: [ParameterSpec], seed: UInt64, layers: Int) {
        for s in specs { insert(s, ParameterInit.value(of: s, seed: seed, layers: layers)) }
    }

    /// Zero tensors with the same names and shapes (gradient buffers, AdamW moments).
    public func zerosLike() -> ParameterSet {
        var z = ParameterSet()
        for n in names { z.insert(specs[n]!, Tensor(zeros: specs[n]!.shape)) }
        return z
    }

    /// Adds a tensor under a spec's name (replacing a previous value with the same name).
    public mutating func insert(_ spec: ParameterSpec, _ value: Tensor) {
        precondition(value.shape == spec.shape, "\(spec.name): shape \(value.shape) ≠ \(spec.shape)")
        if storage[spec.name] == nil { names.append(spec.name) }
        storage[spec.name] = value; specs[spec.name] = spec
    }

    /// The tensor with this name; traps if absent (a chunk asking for a parameter it does not own is a bug).
    public subscript(name: String) -> Tensor {
        get {
            guard let t = storage[name] else { preconditionFailure("no parameter named \(name)") }
            return t
        }
        set { precondition(storage[name] != nil, "no parameter named \(name)"); storage[name] = newValue }
    }

    /// Whether a parameter with this name is present.
    public func contains(_ name: String) -> Bool { storage[name] != nil }

    /// Accumulates into the named tensor in place (no copy of the stored buffer).
    public mutating func modify(_ name: String, _ body: (inout Tensor) -> Void) {
        guard storage[name] != nil else { preconditionFailure("no parameter named \(name)") }
        body(&storage[name]!)
    }

    /// Sets every tensor to zero (explicit zeroing between optimizer steps).
    public mutating func zeroAll() { for n in names { storage[n]!.zero() } }

    /// Merges another set (e.g. the parameters of several chunks into one model).
    public mutating func merge(_ other: ParameterSet) { for n in other.names { insert(other.specs[n]!, other[n]) } }
}

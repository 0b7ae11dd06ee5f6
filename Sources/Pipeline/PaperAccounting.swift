import Model

/// The paper's closed forms (arXiv 2603.15031 §4.1) beside our exact per-hop counts, in block transmissions
/// per microbatch per direction. The paper counts block representations only: no embedding, no partials.
public struct PaperAccounting: Sendable {
    /// N_p: blocks completed per chunk on average (N / C; Full AttnRes: L / C).
    public let blocksPerChunk: Double
    /// Eq. 7: Σ_{j=1}^{C−1} j·N_p = C(C−1)/2 · N_p.
    public let eq7Naive: Double
    /// Eq. 8: P(P−1)/2 · N_p + (V−1)·P²·N_p.
    public let eq8Cached: Double
    /// Exact block transmissions (b_0 included) with no cache, received-only cache, cross-stage cache.
    public let exact: [CachePolicy: Int]
    /// The same without b_0, the paper's convention.
    public let exactWithoutEmbedding: [CachePolicy: Int]
    /// Partial sums that also travel (every policy sends the same partials).
    public let partials: Int
    /// Block transmissions on hops into the second and later virtual stages (hop k ≥ P−1), per policy: the
    /// hops where the cache helps (the paper's Figure 3 counts these).
    public let laterVirtualStages: [CachePolicy: Int]

    public init(layout: Layout, residual: ResidualKind, blocks: Int) {
        precondition(residual != .standard, "paper accounting is for AttnRes")
        let n = residual == .full ? layout.layers : blocks
        let c = Double(layout.chunks), p = Double(layout.ranks), v = Double(layout.virtualStages)
        blocksPerChunk = Double(n) / c
        eq7Naive = c * (c - 1) / 2 * blocksPerChunk
        eq8Cached = p * (p - 1) / 2 * blocksPerChunk + (v - 1) * p * p * blocksPerChunk
        var exact: [CachePolicy: Int] = [:], noEmb: [CachePolicy: Int] = [:], later: [CachePolicy: Int] = [:]
        var partials = 0
        for cache in CachePolicy.allCases {
            let plan = HopPlan(layout: layout, residual: ResidualConfig(kind: residual, blocks: blocks, cache: cache))
            let blocksPerHop = plan.tensors.map { $0.filter { $0.kind == .block } }
            exact[cache] = blocksPerHop.map(\.count).reduce(0, +)
            noEmb[cache] = blocksPerHop.map { $0.filter { $0 != .block(0) }.count }.reduce(0, +)
            later[cache] = blocksPerHop.enumerated().filter { $0.offset >= layout.ranks - 1 }.map { $0.element.count }.reduce(0, +)
            partials = plan.tensors.map { $0.filter { $0.kind == .partial }.count }.reduce(0, +)
        }
        self.exact = exact
        exactWithoutEmbedding = noEmb
        laterVirtualStages = later
        self.partials = partials
    }
}

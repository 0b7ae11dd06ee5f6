import Model

extension TensorRole {
    /// The traffic kind that reports group bytes by.
    public var kind: TensorKind {
        switch self {
        case .hidden: return .activation
        case .block: return .block
        case .partial: return .partial
        }
    }
}

/// The kinds of payload a link carries, as reported per link and direction.
public enum TensorKind: String, Sendable, CaseIterable, Codable, Comparable {
    case activation, block, partial
    public static func < (a: TensorKind, b: TensorKind) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// Forward or backward (gradients) on a link.
public enum Direction: String, Sendable, Codable, CaseIterable, Comparable {
    case forward, backward
    public static func < (a: Direction, b: Direction) -> Bool { a == .forward && b == .backward }
}

/// The residual configuration that decides what a hop carries.
public struct ResidualConfig: Sendable, Equatable {
    public var kind: ResidualKind
    /// N, only meaningful for `.block` (for `.full` it is L, for `.standard` unused).
    public var blocks: Int
    public var cache: CachePolicy

    public init(kind: ResidualKind, blocks: Int, cache: CachePolicy) {
        self.kind = kind
        self.blocks = blocks
        self.cache = cache
    }
}

/// The static, per-microbatch plan of every hop: which tensors chunk k sends to chunk k+1, and what each rank
/// keeps in its cross-stage cache. Pure: computed from the layout alone, so senders know what receivers hold
/// without any handshake (DESIGN §4).
public struct HopPlan: Sendable, Equatable {
    public let layout: Layout
    public let residual: ResidualConfig
    /// nil for the standard residual.
    public let partition: BlockPartition?
    /// `tensors[k]`: what hop k (chunk k → chunk k+1) carries forward, blocks in increasing order, then the
    /// partial or the hidden state. The backward hop carries the gradient of each, in the same order.
    public let tensors: [[TensorRole]]

    public init(layout: Layout, residual: ResidualConfig) {
        self.layout = layout
        self.residual = residual
        let partition = BlockPartition.of(residual.kind, layers: layout.layers, blocks: residual.blocks)
        self.partition = partition
        tensors = (0..<layout.hops).map { k in
            let state = TensorRole.state(afterLayer: layout.layers(ofChunk: k).upperBound, partition: partition)
            guard let partition else { return state }
            let held = Set(HopPlan.held(byRankOfChunk: k + 1, layout: layout, partition: partition, cache: residual.cache))
            return state.filter { if case .block(let n) = $0 { return !held.contains(n) }; return true }
        }
    }

    /// Every tensor of chunk `k`'s input state (what its forward reads: from the wire or the rank's cache), in wire
    /// order; empty for chunk 0, which embeds tokens.
    public func inputRoles(ofChunk k: Int) -> [TensorRole] {
        k == 0 ? [] : TensorRole.state(afterLayer: layout.layers(ofChunk: k).lowerBound - 1, partition: partition)
    }

    /// Every tensor of chunk `k`'s output state, in wire order; empty for the last chunk, which ends in the loss.
    public func outputRoles(ofChunk k: Int) -> [TensorRole] {
        k == layout.chunks - 1 ? [] : TensorRole.state(afterLayer: layout.layers(ofChunk: k).upperBound, partition: partition)
    }

    /// Blocks completed once chunk `k` has run (b_0 included).
    public func completedBlocks(afterChunk k: Int) -> [Int] {
        guard let partition else { return [] }
        return partition.completedBlocks(afterLayer: layout.layers(ofChunk: k).upperBound)
    }

    /// Blocks that chunk `k` completes itself (chunk 0 also produces b_0, the embedding).
    public func producedBlocks(inChunk k: Int) -> [Int] {
        guard let partition else { return [] }
        let before = k == 0 ? Set<Int>() : Set(partition.completedBlocks(afterLayer: layout.layers(ofChunk: k).lowerBound - 1))
        return completedBlocks(afterChunk: k).filter { !before.contains($0) }
    }

    /// Blocks that the rank of chunk `k` already holds in its cache when chunk `k` starts.
    ///
    /// cross-stage: everything its previous chunk k−P received or produced, i.e. completed(k−P).
    /// received-only: everything its previous chunk received, i.e. completed(k−1−P), plus b_0 on rank 0.
    static func held(byRankOfChunk k: Int, layout: Layout, partition: BlockPartition, cache: CachePolicy) -> [Int] {
        let p = layout.ranks
        let lastOf = { (c: Int) in layout.layers(ofChunk: c).upperBound }
        switch cache {
        case .none:
            return []
        case .crossStage:
            guard k - p >= 0 else { return [] }
            return partition.completedBlocks(afterLayer: lastOf(k - p))
        case .receivedOnly:
            var held: Set<Int> = []
            if k - p >= 0, layout.rank(ofChunk: k) == 0 { held.insert(0) }
            if k - 1 - p >= 0 { held.formUnion(partition.completedBlocks(afterLayer: lastOf(k - 1 - p))) }
            return held.sorted()
        }
    }

    /// Blocks that chunk `k`'s rank stores in its cache while running chunk `k` forward (received on hop k−1,
    /// or produced by chunk k when the policy keeps produced blocks). Empty without a cache, and on a rank's
    /// last virtual stage: no later chunk of that rank reads them (so with V = 1 nothing is cached at all).
    public func cachedBlocks(byChunk k: Int) -> [Int] {
        guard partition != nil, k + layout.ranks < layout.chunks else { return [] }
        let received: [Int] = k > 0 ? tensors[k - 1].compactMap { role -> Int? in
            if case .block(let n) = role { return n }
            return nil
        } : []
        switch residual.cache {
        case .none: return []
        case .crossStage: return Array(Set(received).union(producedBlocks(inChunk: k))).sorted()
        case .receivedOnly:
            let own: [Int] = k == 0 ? [0] : []
            return Array(Set(received).union(own)).sorted()
        }
    }

    /// Bytes of one activation-sized tensor (b·s·d elements).
    public static func activationBytes(microbatchSize: Int, seq: Int, hidden: Int, bytesPerElement: Int = 4) -> Int {
        microbatchSize * seq * hidden * bytesPerElement
    }
}

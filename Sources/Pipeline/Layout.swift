import Model

/// Which block representations a rank keeps for a microbatch between its virtual stages (DESIGN §4).
public enum CachePolicy: String, Sendable, CaseIterable, Codable {
    /// Nothing is kept: every hop carries the whole history b_0 … b_n (plus the partial).
    case none
    /// A rank keeps every completed block it has received or produced; hops ship only what the receiver lacks.
    case crossStage = "cross-stage"
    /// The paper's accounting (Eq. 8, Figure 3): a rank keeps only the blocks it received (rank 0 also b_0).
    case receivedOnly = "received-only"
}

/// Placement of layers onto chunks and of chunks onto ranks (DESIGN §4).
///
/// P physical ranks each run V virtual stages, so there are C = P·V chunks. Chunk k (0-based) holds layers
/// ⌊kL/C⌋+1 … ⌊(k+1)L/C⌋ (layers are 1-based) and runs on rank k mod P. The embedding sits in chunk 0; the
/// output attention, final norm, head and loss in chunk C-1. Hop k carries chunk k's outputs to chunk k+1.
public struct Layout: Sendable, Equatable {
    public let ranks: Int
    public let virtualStages: Int
    public let layers: Int

    public init(ranks: Int, virtualStages: Int, layers: Int) {
        precondition(ranks >= 1 && virtualStages >= 1 && layers >= ranks * virtualStages,
                     "layout needs ranks ≥ 1, virtual ≥ 1 and layers ≥ ranks·virtual")
        self.ranks = ranks
        self.virtualStages = virtualStages
        self.layers = layers
    }

    /// C = P·V.
    public var chunks: Int { ranks * virtualStages }
    /// C − 1 hops per microbatch per direction.
    public var hops: Int { chunks - 1 }

    /// The 1-based layers of chunk `k`.
    public func layers(ofChunk k: Int) -> ClosedRange<Int> {
        (k * layers / chunks + 1)...((k + 1) * layers / chunks)
    }

    /// The rank that runs chunk `k`.
    public func rank(ofChunk k: Int) -> Int { k % ranks }

    /// The virtual stage (0-based) that chunk `k` is on its rank.
    public func virtualStage(ofChunk k: Int) -> Int { k / ranks }

    /// The chunks of rank `r`, in forward order.
    public func chunks(onRank r: Int) -> [Int] { (0..<virtualStages).map { $0 * ranks + r } }
}

/// The partition of L layers into N depth blocks (DESIGN §3): S = ⌊L/N⌋, block n holds layers (n-1)S+1 … nS
/// and block N runs to layer L. Block 0 is the embedding v_0. Full AttnRes is the partition with N = L.
public struct BlockPartition: Sendable, Equatable {
    public let layers: Int
    public let blocks: Int

    public init(layers: Int, blocks: Int) {
        precondition(blocks >= 1 && blocks <= layers, "need 1 ≤ blocks ≤ layers")
        self.layers = layers
        self.blocks = blocks
    }

    /// S = ⌊L/N⌋.
    public var blockSize: Int { layers / blocks }

    /// The block (1-based) that layer `l` (1-based) belongs to.
    public func block(ofLayer l: Int) -> Int { min((l - 1) / blockSize + 1, blocks) }

    public func firstLayer(ofBlock n: Int) -> Int { (n - 1) * blockSize + 1 }

    public func lastLayer(ofBlock n: Int) -> Int { n == blocks ? layers : n * blockSize }

    /// Blocks b_0 … b_n completed once layer `l` has run (l = 0: only the embedding).
    public func completedBlocks(afterLayer l: Int) -> [Int] {
        guard l >= 1 else { return [0] }
        let n = block(ofLayer: l)
        let last = lastLayer(ofBlock: n) == l ? n : n - 1
        return Array(0...last)
    }

    /// The open partial b_n^i after layer `l`, or nil when `l` closes its block (the next layer starts a new
    /// block and gets no partial, not even a zero one: PAPER §2, Eq. 6 case i = 1).
    public func openPartial(afterLayer l: Int) -> (block: Int, layers: Int)? {
        guard l >= 1 else { return nil }
        let n = block(ofLayer: l)
        if lastLayer(ofBlock: n) == l { return nil }
        return (n, l - firstLayer(ofBlock: n) + 1)
    }
}

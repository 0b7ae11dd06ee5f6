/// The partition of L layers into N depth blocks (DESIGN §3): S = ⌊L/N⌋, block n holds layers (n-1)S+1 … nS
/// and block N runs to layer L. Block 0 is the embedding v_0. Full AttnRes is the partition with N = L.
///
/// The one definition of blocks: the model's layers, the hop plan and the traffic model all derive from it.
public struct BlockPartition: Sendable, Equatable {
    public let layers: Int
    public let blocks: Int

    public init(layers: Int, blocks: Int) {
        precondition(blocks >= 1 && blocks <= layers, "need 1 ≤ blocks ≤ layers")
        self.layers = layers
        self.blocks = blocks
    }

    /// The partition a residual mode uses: nil for standard (no blocks), N = L for full, N blocks for block.
    public static func of(_ residual: ResidualKind, layers: Int, blocks: Int) -> BlockPartition? {
        switch residual {
        case .standard: return nil
        case .full: return BlockPartition(layers: layers, blocks: layers)
        case .block: return BlockPartition(layers: layers, blocks: blocks)
        }
    }

    /// S = ⌊L/N⌋.
    public var blockSize: Int { layers / blocks }

    /// The block (1-based) that layer `l` (1-based) belongs to.
    public func block(ofLayer l: Int) -> Int { min((l - 1) / blockSize + 1, blocks) }

    public func firstLayer(ofBlock n: Int) -> Int { (n - 1) * blockSize + 1 }

    public func lastLayer(ofBlock n: Int) -> Int { n == blocks ? layers : n * blockSize }

    /// True when layer `l` is the last of its block, i.e. its output completes b_n.
    public func endsBlock(_ l: Int) -> Bool { lastLayer(ofBlock: block(ofLayer: l)) == l }

    /// Blocks b_0 … b_n completed once layer `l` has run (l = 0: only the embedding).
    public func completedBlocks(afterLayer l: Int) -> [Int] {
        guard l >= 1 else { return [0] }
        let n = block(ofLayer: l)
        return Array(0...(endsBlock(l) ? n : n - 1))
    }

    /// The open partial b_n^i after layer `l`, or nil when `l` closes its block (the next layer starts a new
    /// block and gets no partial, not even a zero one: PAPER §2, Eq. 6 case i = 1).
    public func openPartial(afterLayer l: Int) -> (block: Int, layers: Int)? {
        guard l >= 1, !endsBlock(l) else { return nil }
        let n = block(ofLayer: l)
        return (n, l - firstLayer(ofBlock: n) + 1)
    }
}

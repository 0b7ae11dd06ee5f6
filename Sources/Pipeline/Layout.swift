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

    /// The model's chunk layout (Model's `ChunkLayout`, the one definition of which layers a chunk holds).
    public let chunkLayout: ChunkLayout

    /// Callers validate first (a topology does, with errors naming its keys); an invalid layout here is a bug.
    public init(ranks: Int, virtualStages: Int, layers: Int) {
        let (chunks, overflow) = ranks.multipliedReportingOverflow(by: virtualStages)
        precondition(ranks >= 1 && virtualStages >= 1 && !overflow && layers >= chunks,
                     "layout needs ranks ≥ 1, virtual ≥ 1 and layers ≥ ranks·virtual")
        self.ranks = ranks
        self.virtualStages = virtualStages
        self.layers = layers
        chunkLayout = try! ChunkLayout(layers: layers, chunks: chunks)
    }

    /// C = P·V.
    public var chunks: Int { ranks * virtualStages }
    /// C − 1 hops per microbatch per direction.
    public var hops: Int { chunks - 1 }

    /// The 1-based layers of chunk `k`.
    public func layers(ofChunk k: Int) -> ClosedRange<Int> { chunkLayout.layers(ofChunk: k) }

    /// The rank that runs chunk `k`.
    public func rank(ofChunk k: Int) -> Int { k % ranks }

    /// The virtual stage (0-based) that chunk `k` is on its rank.
    public func virtualStage(ofChunk k: Int) -> Int { k / ranks }

    /// The chunks of rank `r`, in forward order.
    public func chunks(onRank r: Int) -> [Int] { (0..<virtualStages).map { $0 * ranks + r } }
}

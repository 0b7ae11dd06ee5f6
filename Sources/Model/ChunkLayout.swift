/// The split of L layers into C = P·V chunks (DESIGN §4): chunk k (0-based) holds layers ⌊kL/C⌋+1 … ⌊(k+1)L/C⌋.
/// The embedding sits in chunk 0; the output attention, final norm, head and loss in chunk C-1.
public struct ChunkLayout: Equatable, Sendable {
    /// Number of layers L.
    public let layers: Int
    /// Number of chunks C.
    public let chunks: Int

    /// Throws when there are fewer layers than chunks (a chunk would be empty).
    public init(layers: Int, chunks: Int) throws {
        guard chunks >= 1 else { throw ModelConfigError.notPositive(field: "chunks", value: chunks) }
        guard layers >= chunks else { throw ModelConfigError.tooManyChunks(chunks: chunks, layers: layers) }
        self.layers = layers; self.chunks = chunks
    }

    /// The 1-based layers of chunk k.
    public func layers(ofChunk k: Int) -> ClosedRange<Int> { (k * layers / chunks + 1)...((k + 1) * layers / chunks) }

    /// The chunk (0-based) holding layer l (1-based).
    public func chunk(ofLayer l: Int) -> Int { (0..<chunks).first { layers(ofChunk: $0).contains(l) }! }
}

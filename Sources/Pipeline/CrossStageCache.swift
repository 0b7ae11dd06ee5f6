import Model

/// A rank's cross-stage cache (DESIGN §4, PAPER §7.5) with its gradient deposits, for any kind of value.
///
/// Forward: a chunk stores the blocks later chunks of its rank will read (`store`); they `read` them instead of
/// receiving them. Backward: the gradient of a block read from the cache is `deposit`ed on the rank (not sent);
/// the chunk that brought the block onto the rank (its owner) `collect`s the sum into the gradient of its own copy,
/// so the sum leaves on the hop the block arrived by. `free` drops a microbatch once the rank's first chunk has
/// finished its backward. Deposits are kept per slot (microbatch, block): every slot opened is collected exactly
/// once, so the books balance by construction and a slot left over is an error at `free`.
public struct CrossStageCache<Value> {
    /// microbatch → block → (value, bytes).
    private var blocks: [Int: [Int: (value: Value, bytes: Int)]] = [:]
    /// microbatch → block → summed gradient.
    private var deposits: [Int: [Int: Value]] = [:]
    public private(set) var bytes = 0
    public private(set) var peakBytes = 0
    /// Deposit slots opened and collected over the cache's life (equal once every microbatch is freed).
    public private(set) var slotsOpened = 0
    public private(set) var slotsCollected = 0

    public init() {}

    /// Blocks held for microbatch `m`.
    public func heldBlocks(microbatch m: Int) -> Set<Int> { Set(blocks[m]?.keys ?? [:].keys) }

    /// Microbatches with blocks in the cache.
    public var microbatches: [Int] { blocks.keys.sorted() }

    public var isEmpty: Bool { blocks.isEmpty && deposits.isEmpty }

    /// Keeps block `n` of microbatch `m` (a block already held stays as it is: the same tensor, never twice).
    public mutating func store(microbatch m: Int, block n: Int, _ value: Value, bytes count: Int) {
        guard blocks[m]?[n] == nil else { return }
        blocks[m, default: [:]][n] = (value, count)
        bytes += count
        peakBytes = max(peakBytes, bytes)
    }

    public func read(microbatch m: Int, block n: Int) -> Value? { blocks[m]?[n]?.value }

    /// Adds one gradient contribution to the slot of block `n`, opening the slot with the first one.
    public mutating func deposit(microbatch m: Int, block n: Int, _ gradient: Value,
                                 add: (inout Value, Value) throws -> Void) rethrows {
        if var sum = deposits[m]?[n] {
            deposits[m]![n] = nil  // keep the sum uniquely referenced while adding in place
            try add(&sum, gradient)
            deposits[m]![n] = sum
        } else {
            deposits[m, default: [:]][n] = gradient
            slotsOpened += 1
        }
    }

    /// Removes and returns the summed deposits of block `n` (nil when no later chunk read it).
    public mutating func collect(microbatch m: Int, block n: Int) -> Value? {
        guard let sum = deposits[m]?.removeValue(forKey: n) else { return nil }
        if deposits[m]!.isEmpty { deposits[m] = nil }
        slotsCollected += 1
        return sum
    }

    /// Blocks of microbatch `m` whose deposits nobody has collected yet.
    public func openSlots(microbatch m: Int) -> [Int] { deposits[m]?.keys.sorted() ?? [] }

    /// Drops everything held for microbatch `m`.
    public mutating func free(microbatch m: Int) {
        if let entries = blocks.removeValue(forKey: m) { bytes -= entries.values.reduce(0) { $0 + $1.bytes } }
        deposits[m] = nil
    }
}

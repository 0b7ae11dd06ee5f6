/// How a real run's durations spread around their typical values, as ratios (a span ÷ the mean of its kind in its
/// step): what a replay of typical durations leaves out. When durations vary, a rank that waits for a late neighbour
/// cannot win that time back, so the step is longer than the replay of the means (E[max] ≥ max E). A replay with a
/// spread draws every compute duration, send cost and transfer time from these ratios, times its typical value.
public struct DurationSpread: Sendable, Equatable {
    /// Ratios of compute spans (forward and backward) to their chunk's mean in the same step.
    public var compute: [Double]
    /// Ratios of send costs to the mean of their rank and size in the same step.
    public var send: [Double]
    /// Ratios of transfer times (a send's start to its arrival at a receiver that was waiting for it) to the link's
    /// α-β time for their size: a message that waits for its I/O thread to be scheduled arrives late.
    public var transfer: [Double] = []
    /// The draws' seed: one replay per seed.
    public var seed: UInt64 = 1

    public init(compute: [Double], send: [Double], transfer: [Double] = [], seed: UInt64 = 1) {
        self.compute = compute; self.send = send; self.transfer = transfer; self.seed = seed
    }

    /// Whether every list is empty (a replay with it is the typical replay).
    public var isEmpty: Bool { compute.isEmpty && send.isEmpty && transfer.isEmpty }

    /// SplitMix64 (Steele, Lea, Flood 2014): a fixed, portable sequence per seed, so a replay is reproducible.
    struct Draws {
        var state: UInt64
        mutating func next(_ ratios: [Double]) -> Double {
            guard !ratios.isEmpty else { return 1 }
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return ratios[Int(z % UInt64(ratios.count))]
        }
    }
}

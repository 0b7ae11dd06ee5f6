import CKernels

/// How long the calling thread spent inside the model and inside depth attention. The time model's calibration
/// splits every measured forward and backward into three parts (docs/step-time.md): depth attention, the rest of
/// the model, and the executor around it (receiving, caching, handing on tensors). Within one run the three grow
/// together, so a fit of their sum cannot tell them apart, yet they scale differently to other configurations.
///
/// Off by default (a `measure` or `start` is then one C call and a branch). A traced worker enables it on its compute thread
/// and `take`s both totals after every forward and backward. The clocks are per thread.
public enum SpanClock: Int32, Sendable {
    /// The model's own work in a chunk's forward or backward (`ModelChunk`): the embedding, every layer, the head;
    /// not the book-keeping around them (assembling the input state and the tape, handing on the output).
    case model = 0
    /// Depth attention within it (`ModelChunk`), key statistics and the output attention included.
    case depth = 1

    /// Switches the calling thread's clocks on or off and clears their totals.
    public static func enable(_ on: Bool) { attnres_span_clock_enable(on ? 1 : 0) }

    /// Runs `body`, adding its duration to this clock's total when the clocks are on. A clock is not nested in
    /// itself: callers wrap whole calls, never a part of one.
    @inline(__always) public func measure<T>(_ body: () throws -> T) rethrows -> T {
        let clock = start()
        defer { stop(clock) }
        return try body()
    }

    /// For a region that is not one expression: `let t = clock.start()`, then `clock.stop(t)` (NaN when off).
    @inline(__always) public func start() -> Double { attnres_span_clock_enabled() != 0 ? attnres_span_clock_now() : .nan }
    @inline(__always) public func stop(_ start: Double) {
        if !start.isNaN { attnres_span_clock_add(rawValue, attnres_span_clock_now() - start) }
    }

    /// Seconds measured by this clock on this thread since the last take, and clears them.
    public func take() -> Double { attnres_span_clock_take(rawValue) }
}

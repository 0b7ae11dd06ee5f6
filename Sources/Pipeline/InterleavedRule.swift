/// Which microbatch counts an interleaved 1F1B schedule accepts, and the per-rank compute order it runs, as the
/// two public implementations define them (docs/schedules.md states both with their sources).
///
/// Both walk the same skeleton: a warm-up of forwards, then one forward and one backward in turn, then the
/// remaining backwards; they differ in how they group microbatches across the rank's virtual stages:
/// - **Megatron-LM** (`megatron/core/pipeline_parallel/schedules.py`: `forward_backward_pipelining_with_interleaving`,
///   `get_schedule_table`, `get_pp_rank_microbatches`): groups of N = `microbatch_group_size_per_vp_stage`
///   (default P) consecutive microbatches, each group visiting every model chunk in order; P ≤ N ≤ m and
///   m % N ∈ {0} ∪ [P, N) (a short last group of fewer than P would stall the pipeline); the last group takes all
///   that remain. Warm-up (P − r − 1)·2 + (V − 1)·N forwards.
/// - **torch.distributed.pipelining** (`torch/distributed/pipelining/schedules.py`: `ScheduleInterleaved1F1B`,
///   `_get_1f1b_rank_ops`): rounds = max(1, m // P) of m / rounds microbatches each (m % rounds must be 0);
///   forward k runs local stage (k // mpr) % V, backward j local stage V − 1 − (j // mpr) % V, each on the next
///   microbatch that stage has not yet run. Warm-up (V − 1)·mpr + 2·(P − 1 − r) forwards.
///
/// With m % P == 0 and N = P the two orders are the same (and the one Megatron's paper draws).
public struct InterleavedRule: Sendable, Equatable {
    public enum Source: String, Sendable { case megatron, torch }
    public let source: Source
    public let ranks: Int
    /// Megatron's N; nil = P. Unused by torch's rule.
    public let group: Int?

    /// The rule of an interleaved schedule kind (`interleaved-1f1b` is Megatron's, `interleaved-1f1b-torch` torch's).
    public init(_ kind: ScheduleKind, ranks: Int, group: Int? = nil) {
        source = kind == .interleaved1F1BTorch ? .torch : .megatron
        self.ranks = ranks
        self.group = group
    }

    /// Megatron's group size N for this rule (P when not set).
    public var megatronGroup: Int { group ?? ranks }

    /// torch's microbatches per round for `m` microbatches.
    public func microbatchesPerRound(_ m: Int) -> Int { m / max(1, m / ranks) }

    /// Whether the implementation this rule follows accepts `m` microbatches.
    public func accepts(_ m: Int) -> Bool {
        guard m >= 1 else { return false }
        switch source {
        case .megatron:
            let n = megatronGroup, p = ranks
            return p <= n && n <= m && (m % n == 0 || m % n >= p)
        case .torch:
            return m % max(1, m / ranks) == 0
        }
    }

    /// Rank r's compute order: (forward, global chunk, microbatch) in program order, as `ComputeOrder` generates it
    /// (the one implementation of the warm-up and of each forward's and backward's item).
    public func order(rank r: Int, virtualStages v: Int, microbatches m: Int) -> [(forward: Bool, chunk: Int, microbatch: Int)] {
        Array(ComputeOrder(source == .torch ? .interleaved1F1BTorch : .interleaved1F1B, layout: Layout(ranks: ranks, virtualStages: v, layers: ranks * v),
                           microbatches: m, microbatchGroup: group, rank: r))
    }

    /// Megatron's `get_schedule_table`: for each group of N consecutive microbatches (the last takes all that
    /// remain once fewer than N more would follow), every model chunk in order with every microbatch of the group.
    static func megatronTable(microbatches m: Int, chunks v: Int, group n: Int) -> [(microbatch: Int, chunk: Int)] {
        var table: [(microbatch: Int, chunk: Int)] = []
        for start in stride(from: 0, to: m, by: n) {
            let end = start + n >= m ? m : start + n
            for c in 0..<v { for mb in start..<end { table.append((mb, c)) } }
        }
        return table
    }

    /// Microbatch counts this rule accepts nearest to `m`: the largest below and the smallest above (within 4·P).
    public func nearestAccepted(_ m: Int) -> [Int] {
        let below = stride(from: m - 1, through: 1, by: -1).first(where: accepts)
        let above = (m + 1...m + 4 * ranks).first(where: accepts)
        return [below, above].compactMap { $0 }
    }

    /// The refusal of `m` by `kind`'s rule: what the rule needs, which m would work, and which other setting
    /// (a Megatron group size, or the other implementation's schedule) accepts this m as it is.
    public static func refusal(_ kind: ScheduleKind, microbatches m: Int, ranks p: Int, group: Int?) -> String {
        let rule = InterleavedRule(kind, ranks: p, group: group)
        var text: String
        switch rule.source {
        case .megatron:
            let n = rule.megatronGroup
            text = "schedule interleaved-1f1b (Megatron-LM) refuses pipeline.microbatches = \(m) with microbatch group N = \(n)"
                + (group == nil ? " (pipeline.microbatch_group, default = pipeline.ranks)" : "")
                + ": it needs \(p) = P ≤ N ≤ m and m % N = 0 or ≥ P"
        case .torch:
            text = "schedule interleaved-1f1b-torch (torch.distributed.pipelining) refuses pipeline.microbatches = \(m): "
                + "it needs m divisible by rounds = max(1, m // P) = \(max(1, m / p))"
        }
        let near = rule.nearestAccepted(m)
        if !near.isEmpty { text += "; m = " + near.map(String.init).joined(separator: " or ") + " would work" }
        let groups = (p...max(p, m)).filter { InterleavedRule(.interleaved1F1B, ranks: p, group: $0).accepts(m) }
        switch rule.source {
        case .megatron:
            if !groups.isEmpty { text += "; so would pipeline.microbatch_group \(groups.map(String.init).joined(separator: ", "))" }
            if InterleavedRule(.interleaved1F1BTorch, ranks: p).accepts(m) { text += "; schedule interleaved-1f1b-torch accepts m = \(m)" }
        case .torch:
            if InterleavedRule(.interleaved1F1B, ranks: p).accepts(m) {
                text += "; schedule interleaved-1f1b accepts m = \(m)"
            } else if let g = groups.first {
                text += "; schedule interleaved-1f1b with pipeline.microbatch_group \(g) accepts m = \(m)"
            }
        }
        return text
    }
}

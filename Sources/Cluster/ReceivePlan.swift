import Pipeline
import Wire

/// The data messages one rank may still receive in a variant, from its schedule alone: the acceptance rule that
/// keeps a broken or hostile peer from filling the stash (docs/protocol.md, "Limits").
///
/// Every step a rank receives the same set of (kind, hop, microbatch) slots, each from one source rank (forward
/// hop k from the rank of chunk k, backward hop k from the rank of chunk k + 1). A message is accepted only for a
/// slot of the current variant that has not arrived yet, from that slot's source, and for the lowest step with a
/// slot still to arrive or the step after it. No legal sender runs further ahead: a neighbour in step s + 2 has
/// finished step s + 1, which needed this rank's step s + 1 messages, which this rank sends only after it has
/// received all of step s. So the stash never holds more than two steps' receives.
struct ReceivePlan: Equatable {
    struct Slot: Hashable { let kind: FrameKind; let hop: Int; let microbatch: Int }

    let rank: Int
    let variant: Int
    let steps: Int
    /// Each receive of one step, with the rank it must come from.
    let sources: [Slot: Int]
    /// The lowest step some of whose slots have not arrived.
    private(set) var openStep = 0
    /// Slots arrived so far in `openStep` and `openStep + 1`.
    private var arrived: [Int: Set<Slot>] = [:]

    init(rank: Int, variant: Int, topology t: Topology) throws {
        self.rank = rank
        self.variant = variant
        steps = t.steps
        let layout = t.layout
        var sources: [Slot: Int] = [:]
        for a in try t.makeSchedule().actions[rank] {
            switch a {
            case .recvForward, .recvBackward:
                let k = a.message!
                sources[Slot(kind: k.direction == .forward ? .forward : .backward, hop: k.hop, microbatch: k.microbatch)] = k.source(layout)
            default: break
            }
        }
        self.sources = sources
    }

    /// Most data messages the stash can legitimately hold at once.
    var capacity: Int { 2 * sources.count }

    /// Records the arrival of `key` from `source`, or says why no remaining action of this rank takes it.
    mutating func admit(_ key: DataKey, source: Int) -> String? {
        guard key.variant == variant else { return "the variant being run is \(variant)" }
        guard key.step < steps else { return "the variant has steps 0…\(steps - 1)" }
        let slot = Slot(kind: key.kind, hop: key.hop, microbatch: key.microbatch)
        guard let expected = sources[slot] else { return "rank \(rank) receives no \(key.kind) message for hop \(key.hop) microbatch \(key.microbatch)" }
        guard source == expected else { return "that hop's messages come from rank \(expected)" }
        guard key.step >= openStep else { return "every message of step \(key.step) has already arrived" }
        guard key.step <= openStep + 1 else { return "rank \(rank) is still receiving step \(openStep); no sender runs two steps ahead" }
        guard arrived[key.step, default: []].insert(slot).inserted else { return "it has already arrived (a duplicate)" }
        while arrived[openStep]?.count == sources.count {
            arrived[openStep] = nil
            openStep += 1
        }
        return nil
    }
}

/// The stash key of a data message.
struct DataKey: Hashable, CustomStringConvertible {
    let variant: Int
    let step: Int
    let kind: FrameKind
    let hop: Int
    let microbatch: Int

    var description: String { "variant \(variant) step \(step) \(kind) hop \(hop) microbatch \(microbatch)" }
}

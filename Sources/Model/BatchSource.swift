/// A byte corpus and the rule that turns (seed, step) into a batch: the batch of step t is a pure function of
/// (seed, t, config, corpus), so any process can rebuild it without communication.
///
/// Sequence j (0-based) of step t (1-based) starts at offset SplitMix64.mix(mix(seed) ^ t·2³² ^ j) mod (len − seq);
/// tokens are corpus[o ..< o+seq] and targets corpus[o+1 ... o+seq], each byte mapped to `byte % vocab`.
/// Microbatch i takes sequences i·microbatchSize ..< (i+1)·microbatchSize.
public struct BatchSource: Sendable {
    /// The corpus bytes.
    public let corpus: [UInt8]
    public let seq: Int
    public let vocab: Int
    public let seed: UInt64

    /// Errors for corpora that cannot feed a batch.
    public enum Failure: Error, CustomStringConvertible {
        case corpusTooShort(bytes: Int, seq: Int)
        public var description: String {
            switch self {
            case let .corpusTooShort(b, s): return "the data has \(b) bytes; it needs more than seq + 1 = \(s + 1)"
            }
        }
    }

    public init(corpus: [UInt8], seq: Int, vocab: Int, seed: UInt64) throws {
        guard corpus.count > seq + 1 else { throw Failure.corpusTooShort(bytes: corpus.count, seq: seq) }
        self.corpus = corpus; self.seq = seq; self.vocab = vocab; self.seed = seed
    }

    /// The default synthetic corpus (see `SyntheticCorpus`). `seq` must be below its length minus 1, which
    /// `Topology.validate` (compute mode) and `Topology.validateModel` (train, bench) check before any command gets
    /// here, naming model.seq and its flag.
    public static func synthetic(seq: Int, vocab: Int, seed: UInt64) -> BatchSource {
        precondition(seq < SyntheticCorpus.standard.count - 1,
                     "model.seq \(seq) does not fit the \(SyntheticCorpus.standard.count)-byte synthetic corpus (unvalidated topology)")
        return try! BatchSource(corpus: SyntheticCorpus.standard, seq: seq, vocab: vocab, seed: seed)
    }

    /// Sequence j of step t as (tokens, targets), each [seq].
    public func sequence(step t: Int, index j: Int) -> ([Int32], [Int32]) {
        let key = SplitMix64.mix(seed) ^ (UInt64(t) << 32) ^ UInt64(j)
        let o = Int(SplitMix64.mix(key) % UInt64(corpus.count - seq))
        let tokens = (0..<seq).map { Int32(Int(corpus[o + $0]) % vocab) }
        let targets = (0..<seq).map { Int32(Int(corpus[o + 1 + $0]) % vocab) }
        return (tokens, targets)
    }

    /// The m microbatches of step t (1-based), each `microbatchSize` sequences.
    public func batch(step t: Int, microbatches m: Int, microbatchSize b: Int) -> [Microbatch] {
        (0..<m).map { i in
            var tokens: [Int32] = [], targets: [Int32] = []
            for j in (i * b)..<((i + 1) * b) {
                let (x, y) = sequence(step: t, index: j)
                tokens += x; targets += y
            }
            return Microbatch(tokens: tokens, targets: targets, sequences: b)
        }
    }
}

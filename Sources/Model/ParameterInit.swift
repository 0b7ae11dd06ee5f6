import Numerics
import Foundation

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed 64-bit generator. Every random number in the model
/// (parameter init, synthetic corpus, batch sampling) comes from one of these, seeded from explicit inputs only.
public struct SplitMix64: Sendable {
    public private(set) var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// The SplitMix64 finaliser: a bijective avalanche of 64 bits.
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Uniform integer in 0..<bound (bound ≥ 1; modulo bias is < 2⁻⁴⁰ for the bounds used here).
    public mutating func next(below bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Standard normal by Box–Muller (the cosine branch only, one normal per two uniforms, for simplicity).
    public mutating func nextNormal() -> Double {
        let u1 = max(nextUniform(), 0x1p-60), u2 = nextUniform()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }
}

/// Deterministic initialisation, one stream per parameter name, so a pipeline rank that builds only its own chunks'
/// parameters gets bit-identical values to the single-process model (DESIGN §3, "identical whichever rank").
///
/// The stream of parameter `name` is SplitMix64 seeded with mix(seed) XOR FNV-1a-64(UTF-8 of name). Values:
/// - matrices and embeddings: N(0, 0.02²), drawn in row-major order;
/// - output projections `attn.wo` and `mlp.w2`: N(0, (0.02/√L)²) (GPT-2's residual scaling, L = sublayers);
/// - RMSNorm gains: 1; pseudo-queries `layers.{l}.query`: 0 (mandatory, paper §5).
public enum ParameterInit {
    /// Base standard deviation of weights.
    public static let std: Double = 0.02

    /// 64-bit FNV-1a of the UTF-8 bytes of `name`.
    public static func fnv1a(_ name: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// The generator for one parameter.
    public static func stream(seed: UInt64, name: String) -> SplitMix64 {
        SplitMix64(seed: SplitMix64.mix(seed) ^ fnv1a(name))
    }

    /// The initial value of a parameter given its spec.
    public static func value(of spec: ParameterSpec, seed: UInt64, layers: Int) -> Tensor {
        switch spec.kind {
        case .gain: return Tensor(repeating: 1, shape: spec.shape)
        case .pseudoQuery: return Tensor(zeros: spec.shape)
        case .matrix, .outputProjection, .embedding:
            let s = spec.kind == .outputProjection ? std / Double(layers).squareRoot() : std
            var rng = stream(seed: seed, name: spec.name)
            var t = Tensor(zeros: spec.shape)
            for i in 0..<t.count { t.data[i] = Float(rng.nextNormal() * s) }
            return t
        }
    }
}

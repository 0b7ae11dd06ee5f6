import XCTest
@testable import Model
@testable import Numerics

/// End-to-end finite-difference check of the whole model's gradients (all chunks, every parameter tensor sampled),
/// with the tolerance policy of docs/model.md (central differences, h = 3e-3, |a − n| ≤ 1e-3 + 1e-2·|n|).
final class ModelGradientTests: XCTestCase {
    func testWholeModelGradientsMatchFiniteDifferences() throws {
        for kind in ResidualKind.allCases {
            let model = try Transformer(config: Fixtures.config(kind), chunks: 2)
            let p = Fixtures.perturbedParameters(model)
            let mbs = Fixtures.microbatches(model.config, m: 2, b: 1)
            var g = p.zerosLike()
            _ = model.lossAndGradients(mbs, parameters: p, gradients: &g)
            func loss(_ q: ParameterSet) -> Float {
                mbs.map { model.loss($0, parameters: q) }.reduce(0, +) / Float(mbs.count)
            }
            let h: Float = 3e-3
            for name in p.names {
                let count = p[name].count
                for i in stride(from: 0, to: count, by: max(1, count / 4)) {
                    var plus = p, minus = p
                    plus.modify(name) { $0.data[i] += h }
                    minus.modify(name) { $0.data[i] -= h }
                    let numeric = (loss(plus) - loss(minus)) / (2 * h)
                    let analytic = g[name].data[i]
                    XCTAssertLessThanOrEqual(abs(analytic - numeric), 1e-3 + 1e-2 * abs(numeric),
                                             "\(kind) \(name)[\(i)]: analytic \(analytic) numeric \(numeric)")
                }
            }
        }
    }
}

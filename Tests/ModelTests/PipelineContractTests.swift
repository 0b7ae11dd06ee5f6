import XCTest
@testable import Model
@testable import Numerics

/// The contract the pipeline (next issue) relies on, exercised in one process: every chunk owns only its parameters,
/// gradients and AdamW state, and hops carry only wire-ordered tensors rebuilt from the static layout. Training this
/// way must match the single-process Trainer bit for bit.
final class PipelineContractTests: XCTestCase {
    func testHopStructureMatchesWhatChunksProduce() throws {
        for kind in ResidualKind.allCases {
            let c = Fixtures.config(kind, layers: 7, blocks: 3)
            let model = try Transformer(config: c, chunks: 7)
            let p = model.initialParameters(seed: 1)
            var act: HopActivations? = nil
            for chunk in model.chunks.dropLast() {
                act = chunk.forward(act, microbatch: Fixtures.microbatches(c)[0], parameters: p).output
                let roles = TensorRole.state(afterLayer: chunk.layers.upperBound, partition: c.partition)
                XCTAssertEqual(act!.tensors.count, roles.count, "\(kind) after layer \(chunk.layers.upperBound)")
                XCTAssertEqual(act!.blocks.count, roles.filter { if case .block = $0 { return true }; return false }.count)
                XCTAssertEqual(act!.hidden != nil, roles == [.hidden])
                XCTAssertEqual(act!.partial != nil, roles.contains { if case .partial = $0 { return true }; return false })
            }
        }
    }

    func testChunkOwnedTrainingMatchesSingleProcessBitForBit() throws {
        for kind in ResidualKind.allCases {
            let config = TrainConfig(model: Fixtures.config(kind), microbatches: 3, microbatchSize: 2, steps: 3, seed: 6,
                                     learningRate: 1e-2)
            let data = BatchSource.synthetic(seq: config.model.seq, vocab: config.model.vocab, seed: config.seed)
            var reference = try Trainer(config: config, data: data)
            let referenceLosses = (0..<config.steps).map { _ in reference.step().loss }

            let layout = try ChunkLayout(layers: config.model.layers, chunks: 3)
            let chunks = (0..<3).map { ModelChunk(config: config.model, layout: layout, index: $0) }
            var params = chunks.map { ParameterSet(initializing: $0.parameterSpecs, seed: config.seed, layers: config.model.layers) }
            var optimizers = params.map { AdamW(parameters: $0, learningRate: config.learningRate) }
            var losses: [Float] = []
            for t in 1...config.steps {
                var grads = params.map { $0.zerosLike() }
                let mbs = data.batch(step: t, microbatches: config.microbatches, microbatchSize: config.microbatchSize)
                let scale = 1 / Float(mbs.count)
                var loss: Float = 0
                for mb in mbs {
                    var tapes: [ChunkTape] = []
                    var wire: [Tensor]? = nil
                    for chunk in chunks {  // forward: each chunk sees only tensors and the static structure
                        let input = wire.map {
                            HopActivations(roles: TensorRole.state(afterLayer: chunk.layers.lowerBound - 1, partition: config.model.partition),
                                           values: $0)
                        }
                        let f = chunk.forward(input, microbatch: mb, parameters: params[chunk.index])
                        tapes.append(f.tape)
                        wire = f.output?.tensors
                        if let l = f.loss { loss += l * scale }
                    }
                    var gradWire: [Tensor]? = nil
                    for chunk in chunks.reversed() {
                        let gradOut = gradWire.map {
                            HopActivations(roles: TensorRole.state(afterLayer: chunk.layers.upperBound, partition: config.model.partition),
                                           values: $0)
                        }
                        gradWire = chunk.backward(tapes[chunk.index], gradOutput: gradOut, lossScale: scale,
                                                  parameters: params[chunk.index], gradients: &grads[chunk.index])?.tensors
                    }
                }
                for k in 0..<chunks.count { optimizers[k].update(&params[k], gradients: grads[k]) }
                losses.append(loss)
            }
            XCTAssertEqual(losses.map(\.bitPattern), referenceLosses.map(\.bitPattern), "\(kind)")
            for k in 0..<chunks.count {
                for n in params[k].names { XCTAssertEqual(params[k][n], reference.parameters[n], "\(kind) \(n)") }
            }
        }
    }
}

import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// Squeeze-and-excitation's tensor gets its gradient in one pass from the pool's backward (the
/// excite's part and the pool's together): the same gradients, bit for bit, as the unfused
/// backward (the excite's write, then the pool's add), on every model here that has the pattern;
/// and the same again when a batch norm's backward makes that gradient in its first pass.
final class SqueezeExciteFusionTests: XCTestCase {
    func testFusedBackwardMatchesUnfused() throws {
        for name in ["k2_effnet_block", "k2_mobilenetv3small", "k2_regnety002"] {
            let (plan, params, g) = try fixtureAfterTrainingForward(name, gradientSeed: 5)
            XCTAssertFalse(plan.squeezeExcite.isEmpty, "\(name) has squeeze-and-excitation")
            func gradients(fused: Bool, intoBatchNorm: Bool) -> [[Float]?] {
                plan.fuseSqueezeExcite = fused
                plan.fuseExciteIntoBatchNorm = intoBatchNorm
                params.zeroGradients()
                g.withUnsafeBufferPointer { _ = plan.backward(logitsGradient: $0.baseAddress!) }
                return params.entries.map { e in e.gradient.map { Array(UnsafeBufferPointer(start: $0, count: e.count)) } }
            }
            let plain = gradients(fused: false, intoBatchNorm: false)
            let fused = gradients(fused: true, intoBatchNorm: false)
            XCTAssertEqual(plan.excitesMadeByBatchNorm, 0, name)
            let intoBatchNorm = gradients(fused: true, intoBatchNorm: true)
            if name == "k2_effnet_block" {
                // bn -> swish -> squeeze-and-excitation: the batch norm's pass makes the gradient
                // where the 16-lane swish kernel runs.
                XCTAssertEqual(plan.excitesMadeByBatchNorm > 0, KernelISA.avx512, name)
            }
            XCTAssertTrue(plain.contains { $0?.contains { $0 != 0 } ?? false }, name)
            for (k, (a, b)) in zip(fused, plain).enumerated() {
                guard let a, let b else { continue }
                assertClose(a, b, tolerance: 0, "\(name) entry \(k)")
            }
            for (k, (a, b)) in zip(intoBatchNorm, plain).enumerated() {
                guard let a, let b else { continue }
                assertClose(a, b, tolerance: 0, "\(name) entry \(k), made in the batch norm's pass")
            }
        }
    }

    /// bn -> swish -> squeeze-and-excitation in a training forward: the squeeze (the swish's
    /// average per image) made by the batch norm's pass as it stores the swish gives the pool's
    /// own values bit for bit, so the same logits; with fewer images than two per worker the pool
    /// runs on its own.
    func testSqueezeMadeByBatchNormMatchesPool() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_effnet_block" })
        let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: c.path(c.arch)!)
        let input = try XCTUnwrap(try H5Arrays.read(path: c.path(c.io)!)["input"])
        let one = Tensor(shape: input.shape, data: input.floats)
        for batch in [2 * RuntimeThreads.count + 1, 1] {
            let x = distinctImages(one, batch: batch)
            let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
            let plan = try TrainingPlan(model: model, params: params, batch: batch)
            XCTAssertFalse(plan.poolAfterActivation.isEmpty, "the block's bn -> swish -> squeeze")
            func forward(poolInBatchNorm: Bool) -> [[Float]] {
                plan.poolInBatchNorm = poolInBatchNorm
                plan.forward([x], training: true, seed: 1, step: 0)
                return (Array(plan.poolAfterActivation.values) + [plan.split.logits]).map { i in
                    Array(UnsafeBufferPointer(start: plan.values[i], count: plan.nodes[i].count))
                }
            }
            let plain = forward(poolInBatchNorm: false)
            XCTAssertTrue(plan.pooledByBatchNorm.isEmpty)
            let fused = forward(poolInBatchNorm: true)
            XCTAssertEqual(plan.pooledByBatchNorm.isEmpty, batch < 2 * RuntimeThreads.count, "batch \(batch)")
            XCTAssertTrue(plain[0].contains { $0 != 0 }, "batch \(batch)")
            for (k, (a, b)) in zip(fused, plain).enumerated() {
                assertClose(a, b, tolerance: 0, "batch \(batch) value \(k)")
            }
        }
    }

    /// `batch` distinct images made from the fixture's: image b is its image b % n scaled by 1 + 0.1 b.
    func distinctImages(_ one: Tensor, batch: Int) -> Tensor {
        let perImage = one.data.count / one.batch
        var data = [Float]()
        for b in 0..<batch {
            let k = b % one.batch
            data += one.data[(k * perImage)..<((k + 1) * perImage)].map { $0 * (1 + 0.1 * Float(b)) }
        }
        return Tensor(shape: [batch] + Array(one.shape.dropFirst()), data: data)
    }

    /// The excite's multiply folded into the 1x1 convolution after it (never stored; made as the
    /// convolution reads x, forward and for its kernel's gradient): the same values, logits and
    /// gradients, bit for bit, as with the multiply stored, at several images and one.
    func testExciteFoldedIntoConvolutionMatchesStored() throws {
        for name in ["k2_effnet_block", "k2_mobilenetv3small", "k2_regnety002"] {
            let c = try XCTUnwrap(fixtureCases().first { $0.name == name })
            let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: c.path(c.arch)!)
            let input = try XCTUnwrap(try H5Arrays.read(path: c.path(c.io)!)["input"])
            let one = Tensor(shape: input.shape, data: input.floats)
            for batch in [3, 1] {
                let x = distinctImages(one, batch: batch)
                let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
                let plan = try TrainingPlan(model: model, params: params, batch: batch)
                XCTAssertFalse(plan.exciteIntoConv.isEmpty, "\(name): an excite read only by a 1x1 convolution")
                let classes = plan.nodes[plan.split.logits].count / batch
                let g = (0..<(batch * classes)).map { Float(($0 * 7) % 5) * 0.1 - 0.2 }
                func step(folded: Bool) -> (values: [[Float]], gradients: [[Float]?]) {
                    plan.foldExciteIntoConv = folded
                    XCTAssertEqual(plan.foldsExcites, folded && KernelISA.avx512, name)
                    plan.forward([x], training: true, seed: 1, step: 0)
                    let values = plan.nodes.indices.filter { !plan.excitesFolded.contains($0) && !plan.folded.contains($0) }
                        .map { i in Array(UnsafeBufferPointer(start: plan.values[i], count: plan.nodes[i].count)) }
                    params.zeroGradients()
                    g.withUnsafeBufferPointer { _ = plan.backward(logitsGradient: $0.baseAddress!) }
                    return (values, params.entries.map { e in e.gradient.map { Array(UnsafeBufferPointer(start: $0, count: e.count)) } })
                }
                let stored = step(folded: false)
                let folded = step(folded: true)
                XCTAssertTrue(stored.gradients.contains { $0?.contains { $0 != 0 } ?? false }, name)
                for (k, (a, b)) in zip(folded.values, stored.values).enumerated() {
                    assertClose(a, b, tolerance: 0, "\(name) batch \(batch) value \(k)")
                }
                for (k, (a, b)) in zip(folded.gradients, stored.gradients).enumerated() {
                    guard let a, let b else { continue }
                    assertClose(a, b, tolerance: 0, "\(name) batch \(batch) gradient \(k)")
                }
            }
        }
    }
}

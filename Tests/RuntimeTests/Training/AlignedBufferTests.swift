import Foundation
import Graph
import H5Model
import TestSupport
import XCTest
@testable import Runtime

/// The training step's tensors, weights, gradients and optimizer slots start on a cache line
/// (`allocateAlignedFloats`): malloc's blocks of that size start 16 bytes into one, which splits
/// every 16-lane access of a row in two.
final class AlignedBufferTests: XCTestCase {
    func testTrainingBuffersStartOnACacheLine() throws {
        for count in [1, 5, 1000, 1 << 20, (1 << 20) + 3] {
            let p = allocateAlignedFloats(count)
            XCTAssertEqual(Int(bitPattern: p) % 64, 0, "\(count) floats")
            p.initialize(repeating: 1, count: count)
            p.deallocate()
        }
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_effnet_block" })
        let model = try LoadedModel.load(path: c.path(c.weights)!, archPath: c.path(c.arch)!)
        let io = try H5Arrays.read(path: c.path(c.io)!)
        let input = try XCTUnwrap(io["input"])
        let params = ParameterStore(model: model) { _, spec in spec.trainableKind }
        let plan = try TrainingPlan(model: model, params: params, batch: input.shape[0])
        let pointers = plan.values + plan.grads + [plan.workspace]
            + params.entries.flatMap { [$0.values] + ($0.gradient.map { [$0] } ?? []) }
        for p in pointers { XCTAssertEqual(Int(bitPattern: p) % 64, 0) }
        let adam = Adam()
        try adam.build(params.entries.filter(\.trainable).map {
            ParameterBuffer(name: "\($0.layerKey)/\($0.spec.name)", value: $0.values, gradient: $0.gradient!, count: $0.count)
        })
        for s in adam.slotNames.indices { XCTAssertEqual(Int(bitPattern: adam.slot(s)) % 64, 0, "slot \(s)") }
    }
}

import Foundation
import Graph
import TestSupport
import XCTest
@testable import Runtime

/// A student's frozen prefix taken from a teacher's pass where both compute the same
/// (`SharedPrefix.swift`): found by content (weights bit for bit, the layer's config, the inputs),
/// cut where the two first differ, and the steps the same bits as the student's own prefix.
final class SharedPrefixTests: XCTestCase {
    func seed() throws -> LoadedModel { try seedModel() }

    /// The seed's teacher in shape: the same model with every weight from `layer` on (in model
    /// order) changed, as fine-tuning with the layers before it frozen leaves it.
    func fineTuned(from layer: String) throws -> LoadedModel {
        var model = try seed()
        let start = try model.graph.findLayer(layer)
        for node in model.graph.nodes where node.id >= start {
            guard var list = model.weights.byLayer[node.layerKey] else { continue }
            for k in list.indices where list[k].spec.trainableKind {
                list[k].values = .float32(list[k].floats.enumerated().map { i, v in v * (1 + 0.01 * Float(i % 7 - 3)) })
            }
            model.weights.byLayer[node.layerKey] = list
        }
        return model
    }

    func run(student: LoadedModel? = nil, teacher: LoadedModel, trainable: TrainableSelection, share: Bool, rows: [Int],
             precision: Precision = .float32) throws -> (losses: [Float], params: [[Float]], cut: [String]?) {
        var config = DistillConfig()
        config.seed = 5
        config.trainable = trainable
        config.teacherPrecision = precision
        config.sharePrefix = share
        let student = try student ?? seed()
        let distiller = try Distiller(student: student, teacher: teacher, optimizer: Adam(learningRate: .constant(1e-2)),
                                      config: config)
        let (losses, params) = try seedSteps(distiller, rows: rows, seed: 3)
        let cut = try distiller.plan(batch: rows[0]).shared?.cut.map { student.graph.nodes[$0].name }
        XCTAssertEqual(cut, distiller.sharedPrefix?.cut.map { student.graph.nodes[$0].name })
        return (losses, params, cut)
    }

    func assertSameSteps(teacher: LoadedModel, trainable: TrainableSelection, expectCut: [String], _ what: String) throws {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(2)
        let shared = try run(teacher: teacher, trainable: trainable, share: true, rows: [3, 2])
        let own = try run(teacher: teacher, trainable: trainable, share: false, rows: [3, 2])
        XCTAssertEqual(shared.cut, expectCut, what)
        XCTAssertNil(own.cut, what)
        XCTAssertTrue(shared.losses.allSatisfy(\.isFinite), what)
        XCTAssertEqual(shared.losses, own.losses, what)
        XCTAssertEqual(shared.params.count, own.params.count, what)
        for (k, (a, b)) in zip(shared.params, own.params).enumerated() where a != b {
            XCTFail("\(what): parameter \(k) differs after the steps")
            break
        }
    }

    /// The seed's case: the teacher differs from block5a_expand_conv on; the student trains its
    /// head on a frozen base, whose prefix goes on from block4c's output after the teacher's pass.
    func testSeedTeacherHeadOnlySharesBlocksOneToFour() throws {
        try assertSameSteps(teacher: fineTuned(from: "block5a_expand_conv"), trainable: .headOnly,
                            expectCut: ["block2a_project_bn", "block2b_project_bn"], "head only")
    }

    /// Unfrozen from block5a: the student's whole frozen prefix is the shared part.
    func testSeedTeacherUnfrozenFromBlock5aNeedsNoPrefixOfItsOwn() throws {
        try assertSameSteps(teacher: fineTuned(from: "block5a_expand_conv"), trainable: .unfreezeFrom("block5a_expand_conv"),
                            expectCut: ["block2a_project_bn", "block2b_project_bn"], "unfrozen from block5a")
    }

    /// What the job's first line reports: the layers at the cut where the steps share them (two
    /// workers, several large images), nothing where they run the student's own prefix.
    func testSharedLayersAsReported() throws {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        var config = DistillConfig()
        config.trainable = .headOnly
        let distiller = try Distiller(student: seed(), teacher: fineTuned(from: "block5a_expand_conv"), optimizer: Adam(),
                                      config: config)
        RuntimeThreads.set(2)
        XCTAssertNil(distiller.prefixShared(batch: 8), "no plan for 8 images yet")
        _ = try distiller.plan(batch: 8)
        _ = try distiller.plan(batch: 1)
        let shared = try XCTUnwrap(distiller.prefixShared(batch: 8))
        XCTAssertEqual(shared.layers.map { $0.split(separator: "/").last.map(String.init) ?? $0 },
                       ["block2a_project_bn", "block2b_project_bn"])
        XCTAssertEqual(shared.teacher, 0)
        XCTAssertNil(distiller.prefixShared(batch: 1))
        RuntimeThreads.set(1)
        XCTAssertNil(distiller.prefixShared(batch: 8))
        config.sharePrefix = false
        RuntimeThreads.set(2)
        let own = try Distiller(student: seed(), teacher: seed(), optimizer: Adam(), config: config)
        _ = try own.plan(batch: 8)
        XCTAssertNil(own.prefixShared(batch: 8))
    }

    /// A teacher that differs from the first layer with weights shares nothing worth a cut (the
    /// Rescaling and Normalization before the stem would be all), and a teacher in bf16 nothing.
    func testNothingSharedWhenTheStemDiffersOrTheTeacherRunsInBF16() throws {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(2)
        XCTAssertNil(try run(teacher: fineTuned(from: "stem_conv"), trainable: .headOnly, share: true, rows: [2]).cut)
        if KernelISA.bf16Available {
            XCTAssertNil(try run(teacher: seed(), trainable: .headOnly, share: true, rows: [2], precision: .bfloat16).cut)
        }
    }

    /// One bit of one weight is enough to tell two layers apart; a layer's name is not.
    func testMatchingByContent() throws {
        let student = try seed()
        var teacher = student
        let graph = student.graph
        let dw = try graph.findLayer("block2a_project_conv")
        let key = graph.nodes[dw].layerKey
        var list = try XCTUnwrap(teacher.weights.byLayer[key])
        var floats = list[0].floats
        floats[17] = Float(bitPattern: floats[17].bitPattern ^ 1)
        list[0].values = .float32(floats)
        teacher.weights.byLayer[key] = list
        let all = Set(graph.nodes.map(\.id))
        let match = SharedPrefix.matching(student: student, teacher: teacher, within: all)
        XCTAssertEqual(match[try graph.findLayer("block2a_se_excite")], try graph.findLayer("block2a_se_excite"))
        XCTAssertEqual(match[try graph.findLayer("block1a_project_bn")], try graph.findLayer("block1a_project_bn"))
        XCTAssertNil(match[dw])
        XCTAssertNil(match[try graph.findLayer("block2a_project_bn")], "after a layer that differs")
        // Drop-connect draws noise in the student's training forward: nothing after it is shared.
        XCTAssertNil(match[try graph.findLayer("block2b_drop")])
        XCTAssertNil(match[try graph.findLayer("block2b_add")])
        XCTAssertNil(match[try graph.findLayer("top_conv")])
        // The training forward's noise layers never match, unless called with training=False.
        var drop = graph.nodes[try graph.findLayer("block2b_drop")]
        XCTAssertFalse(SharedPrefix.computesAlike(drop))
        drop.inferenceOnly = true
        XCTAssertTrue(SharedPrefix.computesAlike(drop))
        drop.op = .augment(AugmentSpec(kind: .flip(horizontal: true, vertical: false, oneDraw: false), kerasMajor: 2))
        XCTAssertFalse(SharedPrefix.computesAlike(drop))
    }

    /// A student whose base is called with `training=False` (Keras's transfer-learning idiom):
    /// its drop-connect is the identity in training too, so everything up to where the teacher's
    /// fine-tuning began is shared, and the steps are still the student's own bits.
    func testBaseCalledWithTrainingFalseSharesUpToTheFineTunedBlocks() throws {
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        RuntimeThreads.set(2)
        var student = try seed()
        for i in student.graph.nodes.indices where !student.graph.nodes[i].scope.isEmpty {
            student.graph.nodes[i].inferenceOnly = true
        }
        let teacher = try fineTuned(from: "block5a_expand_conv")
        let shared = try run(student: student, teacher: teacher, trainable: .headOnly, share: true, rows: [3, 2])
        let own = try run(student: student, teacher: teacher, trainable: .headOnly, share: false, rows: [3, 2])
        XCTAssertEqual(shared.cut, ["block4c_add"])
        XCTAssertEqual(shared.losses, own.losses)
        XCTAssertTrue(zip(shared.params, own.params).allSatisfy { $0 == $1 })
    }
}

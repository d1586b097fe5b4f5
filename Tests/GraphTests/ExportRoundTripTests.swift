import Foundation
import H5Model
import TestSupport
import XCTest
@testable import Graph

/// Every fixture, in every form, read -> exported (full and weights-only, for each target) ->
/// written -> read back must give the same model with bit-identical weights. Whether real Keras
/// loads the written files is fixtures/check_export.py's job; this checks our side and the weight
/// order against the order Keras itself wrote.
/// Fixtures with operation layers, which load only in the Keras that wrote them.
let tfOpCases = ["k2_mobilenetv3small", "k2_regnety002", "k2_tensor_ops", "k2_tensor_ops_math", "k2_resizing_methods",
                 "k2_convnext_tiny"]
let keras3OpCases = ["k3_mobilenetv3small", "k3_tensor_ops", "k3_tensor_ops_math", "k3_resizing_methods", "k3_convnext_tiny"]

final class ExportRoundTripTests: XCTestCase {
    /// (case name contains, target) -> text the refusal must contain. Everything else must export.
    let refusals: [(String, KerasTarget, String)] = [
        ("k2_activations", .both, "'hard_sigmoid' is tf-keras's"),
        ("k2_activations", .keras3, "'hard_sigmoid' is tf-keras's"),
        ("k3_activations", .both, "tf-keras cannot express"),
        ("k3_activations", .keras2, "tf-keras cannot express"),
        ("nested_functional", .both, "numbers from 1 and Keras 3 from 0"),
        ("chunked_attributes", .both, "numbers from 1 and Keras 3 from 0"),
        // RandomCrop resizes in tf-keras at inference and passes images through in Keras 3.
        ("k2_random_crop", .both, "at inference tf-keras resizes"),
        ("k2_random_crop", .keras3, "at inference tf-keras resizes"),
        ("k3_random_crop", .both, "at inference tf-keras resizes"),
        ("k3_random_crop", .keras2, "at inference tf-keras resizes"),
        // tf-keras has no rms_scaling.
        ("k3_layer_norm_axes", .both, "rms_scaling is a Keras 3 feature"),
        ("k3_layer_norm_axes", .keras2, "rms_scaling is a Keras 3 feature"),
    ] + tfOpCases.flatMap { name in [KerasTarget.both, .keras3].map { (name, $0, "load in tf-keras only") } }
      + keras3OpCases.flatMap { name in KerasTarget.allCases.map { (name, $0, "load only from Keras 3's own formats") } }

    func expectedRefusal(_ c: FixtureCase, _ target: KerasTarget) -> String? {
        refusals.first { c.name.contains($0.0) && $0.1 == target }?.2
    }

    func testEveryFixtureRoundTripsForEveryTarget() throws {
        let folder = try ExportFolder()
        var checked = 0, refused = 0
        for c in try fixtureCases() {
            for form in c.forms {
                let original = try LoadedModel.load(path: form.model, archPath: form.arch)
                for target in KerasTarget.allCases {
                    for weightsOnly in [false, true] {
                        let label = "\(c.name) (\(form.label)) -> \(weightsOnly ? "weights-only" : "full"), target \(target.rawValue)"
                        let nestedNormalization = weightsOnly && target.loadsInKeras3 && c.name.contains("seed")
                        if let reason = nestedNormalization ? "cannot give Keras 3 a nested Normalization's statistics"
                                                            : expectedRefusal(c, target) {
                            let message = errorText { _ = try original.exportFile(weightsOnly: weightsOnly, target: target) }
                            XCTAssertTrue(message?.contains(reason) ?? false, "\(label): \(message ?? "no error")")
                            refused += 1
                            continue
                        }
                        let h5 = folder.path("out.h5"), json = folder.path("out.json")
                        try original.exportFile(weightsOnly: weightsOnly, target: target).write(to: h5, architecturePath: json)
                        let written = try LoadedModel.load(path: h5, archPath: weightsOnly ? json : nil)
                        let folded = assertSameModel(written, original, label)
                        // Only Keras 3 needs nested Normalization statistics in the config.
                        if target == .keras2 { XCTAssertTrue(folded.isEmpty, label) }
                        if original.format == .legacyH5 {
                            try assertKerasLayout(written.file, original: original.file, folded: folded, label: label)
                        }
                        // The JSON describes the same model whatever the form (model_from_json + load_weights).
                        assertSameModel(try LoadedModel.load(path: h5, archPath: json), original, label + " via JSON")
                        checked += 1
                    }
                }
            }
        }
        // 4 refused (case, target) pairs with 2 forms each, 4 numbering cases with 2 forms (k3n_nested_functional
        // among them, read from .keras and from .weights.h5 + JSON); x2 modes.
        // Operation layers: tf-keras's (6 cases, 2 forms, 2 targets), Keras 3's (5 cases, 2 forms, 3 targets).
        // RandomCrop across versions and rms_scaling for tf-keras: 3 cases, 2 targets, 2 forms.
        // Weights-only for Keras 3 with a nested Normalization: 4 seed cases (k2_seed_effnetb0, k2_seed_mini,
        // emu_tf23_seed_mini, k3n_seed_mini) in their forms, 2 targets each.
        let seedForms = try fixtureCases().filter { $0.name.contains("seed") }.reduce(0) { $0 + $1.forms.count }
        XCTAssertEqual(refused, (4 * 2 + 5 * 2 + 6 * 2 * 2 + 5 * 2 * 3 + 3 * 2 * 2) * 2 + seedForms * 2)
        XCTAssertGreaterThan(checked, 400)
    }

    /// Against the file Keras wrote: the same `layer_names`, and in every group the same weight
    /// names in the same order (minus folded Normalization statistics). tf-keras's own names are
    /// ours, so this is exact for the files tf-keras wrote; Keras 3 names weights differently
    /// (variable paths, DepthwiseConv2D `kernel`), so there the (layer, weight) sequence is compared.
    func assertKerasLayout(_ written: KerasH5File, original: KerasH5File, folded: Set<String>, label: String) throws {
        XCTAssertEqual(written.weights.layerNames, original.weights.layerNames, label)
        let foldedNames = Set(folded.map { $0.split(separator: "/").last.map(String.init) ?? $0 })
        for group in original.weights.layers {
            let expected = group.weights.map { identity($0.name, group.name) }.filter { !foldedNames.contains($0.layer) }
            let got = written.weights.layer(named: group.name)?.weights.map { identity($0.name, group.name) } ?? []
            XCTAssertEqual(got.map(\.text), expected.map(\.text), "\(label): group '\(group.name)'")
        }
    }

    /// (layer, weight) of a weight name in either Keras's spelling; DepthwiseConv2D's kernel is
    /// `depthwise_kernel` in tf-keras and `kernel` in Keras 3, so both compare as `kernel`. A bare
    /// name (tf-keras's adapted Normalization writes `mean:0`) belongs to the group's layer.
    func identity(_ name: String, _ group: String) -> (layer: String, text: String) {
        let (prefix, short) = splitWeightName(name)
        var layer = prefix.split(separator: "/").last.map(String.init) ?? group
        // Keras 2.0's renamed prefixes (`conv1_conv_1/kernel:0` in group `conv1_conv`, bound by
        // position) are written back under the layer's own name, as Keras writes them today.
        if layer == group + "_1" { layer = group }
        // Keras 3 stores a variable created without a name (ConvNeXt's LayerScale gamma) as
        // `variable`; it is written back under tf-keras's name, `gamma`.
        let unnamed = short == "variable" || (short.hasPrefix("variable_") && Int(short.dropFirst("variable_".count)) != nil)
        return (layer, "\(layer)/\(short == "depthwise_kernel" ? "kernel" : unnamed ? "gamma" : short)")
    }
}

import Foundation
import H5Model
import TestSupport
import XCTest
@testable import Graph

/// A fresh folder per test, removed afterwards.
final class ExportFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("graph-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    var contents: [String] { (try? FileManager.default.contentsOfDirectory(atPath: url.path).sorted()) ?? [] }
}

/// Bit patterns, so "equal" means bit-identical (Float's == equates 0 and -0, never NaNs).
func bits(_ values: WeightValues) -> [UInt64] {
    switch values {
    case .float32(let v): return v.map { UInt64($0.bitPattern) }
    case .float64(let v): return v.map(\.bitPattern)
    case .float16(let v): return v.map { UInt64($0) }
    case .int32(let v): return v.map { UInt64(UInt32(bitPattern: $0)) }
    case .int64(let v): return v.map { UInt64(bitPattern: $0) }
    }
}

func errorText(_ body: () throws -> Void) -> String? {
    do { try body(); return nil } catch { return String(describing: error) }
}

/// Asserts that `written` (re-read from what the exporter wrote) describes the same model as
/// `original`: same nodes, ops, wiring, shapes, trainable flags, and bit-identical weights.
/// A Normalization whose statistics moved into the config must carry exactly the original
/// weights' values there. Returns the layer keys of such folded layers.
@discardableResult
func assertSameModel(_ written: LoadedModel, _ original: LoadedModel, _ label: String,
                     file: StaticString = #filePath, line: UInt = #line) -> Set<String> {
    let a = original.graph, b = written.graph
    var folded = Set<String>()
    guard a.nodes.count == b.nodes.count else {
        XCTFail("\(label): \(b.nodes.count) nodes, the original has \(a.nodes.count)", file: file, line: line)
        return folded
    }
    for (x, y) in zip(a.nodes, b.nodes) {
        let at = "\(label): node \(x.id) '\(x.layerKey)'"
        // tf-keras's `Custom>CustomScaleLayer` is written for Keras 3 under its class name alone.
        let bare = { (name: String) in name.split(separator: ">").last.map(String.init) ?? name }
        XCTAssertEqual([x.name, bare(x.className)] + x.scope, [y.name, bare(y.className)] + y.scope, at, file: file, line: line)
        XCTAssertEqual(x.inputs, y.inputs, at, file: file, line: line)
        XCTAssertEqual(x.outputShape, y.outputShape, at, file: file, line: line)
        XCTAssertEqual(x.trainable, y.trainable, "\(at) trainable", file: file, line: line)
        if case .normalization(nil, nil, let invert) = x.op, case .normalization(let mean?, let variance?, invert) = y.op {
            folded.insert(x.layerKey)
            XCTAssertTrue(y.weights.isEmpty, at, file: file, line: line)
            let store = original.weights
            XCTAssertEqual(mean.map(\.bitPattern), store.weight("mean", of: x)?.floats.map(\.bitPattern), at, file: file, line: line)
            XCTAssertEqual(variance.map(\.bitPattern), store.weight("variance", of: x)?.floats.map(\.bitPattern), at,
                           file: file, line: line)
            continue
        }
        // tf-keras's fused batch norm feeds its moving variance the unbiased batch variance, Keras 3's
        // the biased one: a model written for the other Keras trains by that Keras's rule.
        if case .batchNorm(var s) = x.op, case .batchNorm(let t) = y.op, a.kerasMajor != b.kerasMajor {
            s.fused = t.fused
            XCTAssertEqual(LayerOp.batchNorm(s), y.op, at, file: file, line: line)
        } else if case .augment(var s) = x.op, case .augment(let t) = y.op, a.kerasMajor != b.kerasMajor {
            // How an augmentation layer draws (tf-keras flips each axis on its own draw and takes one
            // contrast per call; Keras 3 one flip draw, one contrast per image) follows the Keras that
            // reads the file; what it draws from must not change.
            s.kerasMajor = t.kerasMajor
            if case .flip(let h, let v, _) = s.kind, case .flip(_, _, let one) = t.kind { s.kind = .flip(horizontal: h, vertical: v, oneDraw: one) }
            if case .contrast(let f, let clip, _) = s.kind, case .contrast(_, _, let per) = t.kind {
                s.kind = .contrast(factor: f, clip: clip, perBatch: per)
            }
            XCTAssertEqual(LayerOp.augment(s), y.op, at, file: file, line: line)
        } else {
            XCTAssertEqual(x.op, y.op, at, file: file, line: line)
        }
        XCTAssertEqual(x.weights, y.weights, at, file: file, line: line)
    }
    XCTAssertEqual(a.inputs, b.inputs, label, file: file, line: line)
    XCTAssertEqual(a.outputs, b.outputs, label, file: file, line: line)
    // A Sequential's implicit InputLayer may become an explicit entry; it is no layer of Keras's.
    let tops = { (g: ModelGraph) in g.topLevel.filter { $0.className != "InputLayer" }.map(\.name) }
    XCTAssertEqual(tops(a), tops(b), label, file: file, line: line)
    for node in a.uniqueLayers where !folded.contains(node.layerKey) {
        for spec in node.weights {
            let before = original.weights.weight(spec.name, of: node).map { bits($0.values) }
            let after = written.weights.weight(spec.name, of: node).map { bits($0.values) }
            XCTAssertNotNil(after, "\(label): \(node.layerKey)/\(spec.name) missing", file: file, line: line)
            if before != after {
                XCTFail("\(label): \(node.layerKey)/\(spec.name) values differ", file: file, line: line)
            }
        }
    }
    return folded
}

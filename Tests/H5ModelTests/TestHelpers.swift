import Foundation
import XCTest
@testable import H5Model

/// A fresh folder per test, removed afterwards.
final class TemporaryFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("h5model-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(at: url) }

    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    var contents: [String] { (try? FileManager.default.contentsOfDirectory(atPath: url.path).sorted()) ?? [] }
}

/// Builds an HDF5 file with the low-level layer, for files Keras would not write.
func makeHDF5(_ path: String, _ build: (H5Group) throws -> Void) throws {
    try withHDF5 {
        let file = try H5File.create(path, displayPath: path)
        try build(try file.root())
        try file.close()
    }
}

/// Opens a file with the low-level layer to inspect what the writer put on disk.
func inspectHDF5<T>(_ path: String, _ body: (H5Group) throws -> T) throws -> T {
    try withHDF5 { try body(try H5File.open(path).root()) }
}

/// The error message `body` throws, failing the test when it throws none or another error type.
func errorMessage(_ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line) -> String {
    do {
        try body()
        XCTFail("expected an error", file: file, line: line)
    } catch let error as H5ModelError {
        return error.message
    } catch let error as OutputPathError {
        return error.description
    } catch {
        XCTFail("expected H5ModelError or OutputPathError, got \(error)", file: file, line: line)
    }
    return ""
}

/// Deterministic values with fractional bits everywhere, so a lossy path would show.
func ramp(_ count: Int, scale: Float = 0.37) -> [Float] {
    (0..<count).map { Float($0) * scale - 1.5 + 1 / Float(3 + $0) }
}

/// A small model in the shape of a real one: nested layer names, a weightless layer, a scalar
/// int64 count, a float16 and a float64 weight.
func sampleWeights(kerasVersion: String? = "2.15.0", backend: String? = "tensorflow") -> WeightsGroup {
    let layers = [
        LayerWeights(name: "input_1", weights: []),
        LayerWeights(name: "normalization", weights: [
            Weight(name: "normalization/mean:0", shape: [3], floats: [0.485, 0.456, 0.406]),
            Weight(name: "normalization/variance:0", shape: [3], floats: [0.229, 0.224, 0.225]),
            Weight(name: "normalization/count:0", shape: [], values: .int64([1_281_167])),
        ]),
        LayerWeights(name: "blk/conv", weights: [
            Weight(name: "blk/conv/kernel:0", shape: [3, 3, 3, 2], floats: ramp(54)),
            Weight(name: "blk/conv/bias:0", shape: [2], floats: [0.25, -0.125]),
        ]),
        LayerWeights(name: "blk", weights: [
            Weight(name: "blk/gamma:0", shape: [2], floats: [1, 2]),
            Weight(name: "blk/moving_variance:0", shape: [2], values: .float64([0.1, 1e-300])),
        ]),
        LayerWeights(name: "global_average_pooling2d", weights: []),
        LayerWeights(name: "dense", weights: [
            Weight(name: "dense/kernel:0", shape: [2, 3], values: .float16([0x3C00, 0xC000, 0x3555, 0x0001, 0x7BFF, 0x8000])),
            Weight(name: "dense/bias:0", shape: [3], values: .int32([-7, 0, Int32.max])),
        ]),
    ]
    return WeightsGroup(layerNames: layers.map(\.name), layers: layers, kerasVersion: kerasVersion, backend: backend)
}

func sampleFullModel() -> KerasH5File {
    KerasH5File(modelConfig: #"{"class_name": "Functional", "config": {"name": "m\u00e9", "layers": []}}"#,
                trainingConfig: #"{"loss": "categorical_crossentropy"}"#,
                kerasVersion: "2.15.0", backend: "tensorflow", weights: sampleWeights())
}

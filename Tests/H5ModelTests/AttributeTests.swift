import Foundation
import XCTest
@testable import H5Model

final class AttributeTests: XCTestCase {
    func testFixedLengthStringsInEveryPadding() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("a.h5")
        try makeHDF5(path) { root in
            try root.writeFixedStrings("nullpad", ["dense", "bn", ""], itemSize: 12, padding: .nullPadded)
            try root.writeFixedStrings("nullterm", ["dense", "bn"], itemSize: 9, padding: .nullTerminated)
            try root.writeFixedStrings("spacepad", ["dense", "bn"], itemSize: 7, padding: .spacePadded)
            try root.writeFixedStrings("scalar", ["2.4.0"], padding: .nullPadded, scalar: true)
            try root.writeFixedStrings("exact", ["abc"], itemSize: 3, padding: .nullTerminated)
        }
        try inspectHDF5(path) { root in
            XCTAssertEqual(try root.readAttribute("nullpad"), .strings(["dense", "bn", ""]))
            XCTAssertEqual(try root.readAttribute("nullterm"), .strings(["dense", "bn"]))
            XCTAssertEqual(try root.readAttribute("spacepad"), .strings(["dense", "bn"]))
            XCTAssertEqual(try root.readString("scalar"), "2.4.0")
            XCTAssertEqual(try root.readString("exact"), "abc", "a NULLTERM item filling its size has no NUL")
            XCTAssertEqual(try root.attributeInfo("spacepad"),
                           H5AttributeInfo(kind: .fixedString(size: 7, padding: .spacePadded, utf8: false), dims: [2]))
            XCTAssertEqual(try root.attributeInfo("scalar").dims, [])
        }
    }

    func testVariableLengthStringsAsciiAndUtf8() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("a.h5")
        try makeHDF5(path) { root in
            try root.writeVariableStrings("ascii", ["dense/kernel:0", "dense/bias:0"], utf8: false)
            try root.writeVariableStrings("utf8", ["café", "日本"], utf8: true)
            try root.writeVariableStrings("scalar", ["tensorflow"], utf8: true, scalar: true)
        }
        try inspectHDF5(path) { root in
            XCTAssertEqual(try root.readAttribute("ascii"), .strings(["dense/kernel:0", "dense/bias:0"]))
            XCTAssertEqual(try root.readAttribute("utf8"), .strings(["café", "日本"]))
            XCTAssertEqual(try root.readString("scalar"), "tensorflow")
            XCTAssertEqual(try root.attributeInfo("utf8").kind, .variableString(utf8: true))
            XCTAssertEqual(try root.attributeInfo("scalar").dims, [])
        }
    }

    func testNumericAttributesAndEmptyArrays() throws {
        let folder = try TemporaryFolder()
        let path = folder.path("a.h5")
        try makeHDF5(path) { root in
            try root.writeFloat64s("floats", [0.5, -2])
            try root.writeInt64s("ints", [3, Int64.min])
            try root.writeFloat64s("weight_names", [])
        }
        try inspectHDF5(path) { root in
            XCTAssertEqual(try root.readAttribute("floats"), .floats([0.5, -2]))
            XCTAssertEqual(try root.readAttribute("ints"), .integers([3, Int64.min]))
            XCTAssertEqual(try root.readStringList("weight_names"), [], "numpy's [] is an empty list")
            XCTAssertEqual(try root.attributeInfo("weight_names"), H5AttributeInfo(kind: .float(bytes: 8), dims: [0]))
            XCTAssertNil(try root.readStringList("layer_names"))
            XCTAssertTrue(errorMessage { _ = try root.readString("floats") }.contains("numeric, expected strings"))
        }
    }

    func testPieceCountIsKerasArraySplitRule() {
        // Keras: N = 1, 2, ... until every np.array_split piece has nbytes <= 64512.
        func kerasCount(_ count: Int, _ size: Int) -> Int {
            var n = 1
            while AttributeChunking.split(Array(repeating: 0, count: count), into: n).contains(where: { $0.count * size > 64512 }) { n += 1 }
            return n
        }
        for (count, size) in [(1, 1), (312, 40), (268, 240), (269, 240), (300, 240), (1000, 64512), (7, 64512), (5000, 13), (64512, 1), (64513, 1)] {
            XCTAssertEqual(AttributeChunking.pieceCount(count: count, itemSize: size), kerasCount(count, size), "\(count) x \(size)")
        }
        XCTAssertEqual(AttributeChunking.split(Array(0..<10), into: 3).map(Array.init), [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]],
                       "np.array_split: the first count % N pieces are one longer")
    }

    func testLongLayerNamesAreSplitLikeKeras() throws {
        let folder = try TemporaryFolder()
        // 300 names of 240 bytes = 72000 bytes > 64512: 268 fit in one piece, so N = 2 (150 + 150).
        let names = (0..<300).map { String(format: "d%03d_", $0) + String(repeating: "x", count: 235) }
        let layers = names.map { LayerWeights(name: $0, weights: [Weight(name: $0 + "/bias:0", shape: [1], floats: [1])]) }
        let file = KerasH5File(modelConfig: nil, trainingConfig: nil, kerasVersion: nil, backend: nil,
                               weights: WeightsGroup(layerNames: names, layers: layers, kerasVersion: "2.15.0", backend: "tensorflow"))
        try file.write(to: folder.path("w.h5"))
        try inspectHDF5(folder.path("w.h5")) { root in
            let attributes = try root.attributeNames()
            XCTAssertTrue(attributes.contains("layer_names0") && attributes.contains("layer_names1"))
            XCTAssertFalse(attributes.contains("layer_names") || attributes.contains("layer_names2"), "\(attributes)")
            for piece in ["layer_names0", "layer_names1"] {
                XCTAssertEqual(try root.attributeInfo(piece),
                               H5AttributeInfo(kind: .fixedString(size: 240, padding: .nullPadded, utf8: false), dims: [150]))
            }
        }
        XCTAssertEqual(try KerasH5File.read(path: folder.path("w.h5")), file)
    }

    func testEveryPieceHasTheLongestItemsSize() throws {
        let folder = try TemporaryFolder()
        // One 1000-byte name among short ones: all pieces are S1000, 64 items each at most.
        let names = ["w" + String(repeating: "y", count: 999)] + (1..<100).map { "layer/w\($0):0" }
        try makeHDF5(folder.path("a.h5")) { root in try root.writeStringList("weight_names", names) }
        try inspectHDF5(folder.path("a.h5")) { root in
            XCTAssertEqual(try root.attributeInfo("weight_names0").kind, .fixedString(size: 1000, padding: .nullPadded, utf8: false))
            XCTAssertEqual(try root.attributeInfo("weight_names0").dims, [50])
            XCTAssertEqual(try root.attributeInfo("weight_names1").dims, [50])
            XCTAssertEqual(try root.readStringList("weight_names"), names)
        }
    }

    func testItemLongerThanTheHeaderLimitIsAnError() throws {
        let folder = try TemporaryFolder()
        let name = String(repeating: "z", count: 70_000)
        let file = KerasH5File(modelConfig: nil, trainingConfig: nil, kerasVersion: nil, backend: nil,
                               weights: WeightsGroup(layerNames: [name], layers: [LayerWeights(name: name, weights: [])],
                                                     kerasVersion: "2.15.0", backend: "tensorflow"))
        let message = errorMessage { try file.write(to: folder.path("w.h5")) }
        XCTAssertTrue(message.contains("70000 bytes") && message.contains("64512"), message)
        XCTAssertEqual(folder.contents, [], "nothing left behind")
    }

    func testReaderJoinsPiecesUntilOneIsMissing() throws {
        let folder = try TemporaryFolder()
        try makeHDF5(folder.path("a.h5")) { root in
            try root.writeFixedStrings("layer_names0", ["a", "b"])
            try root.writeVariableStrings("layer_names1", ["c"], utf8: false)
            try root.writeFixedStrings("layer_names3", ["never read"])   // after the gap at 2
        }
        try inspectHDF5(folder.path("a.h5")) { root in
            XCTAssertEqual(try root.readStringList("layer_names"), ["a", "b", "c"])
        }
    }

    func testReadsH5py3StyleVariableLengthKerasAttributes() throws {
        // What Keras 2.5+ with h5py 3 writes: vlen ASCII lists and scalars, vlen UTF-8 root strings.
        let folder = try TemporaryFolder()
        try makeHDF5(folder.path("m.h5")) { root in
            try root.writeVariableStrings("keras_version", ["2.15.0"], utf8: true, scalar: true)
            try root.writeVariableStrings("backend", ["tensorflow"], utf8: true, scalar: true)
            try root.writeVariableStrings("model_config", [#"{"class_name": "Sequential"}"#], utf8: false, scalar: true)
            let weights = try root.createGroup("model_weights")
            try weights.writeVariableStrings("layer_names", ["dense", "dropout"], utf8: false)
            try weights.writeVariableStrings("keras_version", ["2.15.0"], utf8: false, scalar: true)
            try weights.writeVariableStrings("backend", ["tensorflow"], utf8: false, scalar: true)
            let dense = try weights.createGroup("dense")
            try dense.writeVariableStrings("weight_names", ["dense/kernel:0"], utf8: false)
            try dense.writeDataset("dense/kernel:0", shape: [1, 2], values: .float32([3, 4]))
            try weights.createGroup("dropout").writeFloat64s("weight_names", [])
            try root.createGroup("optimizer_weights").writeVariableStrings("weight_names", ["Adam/iter:0"], utf8: false)
        }
        let file = try KerasH5File.read(path: folder.path("m.h5"))
        XCTAssertEqual(file.modelConfig, #"{"class_name": "Sequential"}"#)
        XCTAssertNil(file.trainingConfig)
        XCTAssertEqual(file.kerasVersion, "2.15.0")
        XCTAssertEqual(file.weights.layerNames, ["dense", "dropout"])
        XCTAssertEqual(file.weights.layers[0].weights, [Weight(name: "dense/kernel:0", shape: [1, 2], floats: [3, 4])])
        XCTAssertEqual(file.weights.layers[1].weights, [])
    }
}

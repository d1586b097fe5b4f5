import Foundation
import XCTest
import TestSupport
@testable import Runtime

/// A throwaway folder for one test; removed in tearDown.
class TemporaryFolderTestCase: XCTestCase {
    var folder: String = ""

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "distillctl-data-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: folder)
    }

    @discardableResult
    func write(_ relative: String, _ text: String) throws -> String {
        let path = (folder as NSString).appendingPathComponent(relative)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Copies a fixture image (fixtures/<from>) to <folder>/<to>.
    @discardableResult
    func copyImage(_ from: String, to relative: String) throws -> String {
        let path = (folder as NSString).appendingPathComponent(relative)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: fixturesDirectory.appendingPathComponent(from).path, toPath: path)
        return path
    }

    func assertThrows(_ expression: @autoclosure () throws -> Any, mentioning parts: [String],
                      file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            let message = "\(error)"
            XCTAssertFalse(message.contains("\n"), "one line: \(message)", file: file, line: line)
            for p in parts {
                XCTAssertTrue(message.contains(p), "'\(message)' should mention '\(p)'", file: file, line: line)
            }
        }
    }
}

final class DatasetTests: TemporaryFolderTestCase {
    static let classes = ["CBB", "CBSD", "CGM", "CMD", "Healthy"]
    let flow = fixturesDirectory.appendingPathComponent("augment/flow").path

    func seedOptions() -> DatasetOptions {
        var o = DatasetOptions()
        o.imageDirectory = flow + "/images"
        return o
    }

    func testSeedCSVWithOneHotColumns() throws {
        var o = seedOptions()
        o.labels = .oneHot(Self.classes)
        let d = try ImageDataset.load(flow + "/train.csv", options: o)
        XCTAssertEqual(d.classNames, Self.classes)
        XCTAssertEqual(d.files.map(\.name), ["1000015157.jpg", "1000201771.png", "100042118.jpg", "1000723321.png", "1000812911.jpg"])
        XCTAssertEqual(d.files[0].path, flow + "/images/1000015157.jpg")
        XCTAssertEqual(d.labels, try NpyArray.read(path: flow + "/dataframe_y.npy").values)
        XCTAssertEqual(d.hasLabel, [true, true, true, true, true])
    }

    func testLabelColumnIndicesAndNames() throws {
        // Automatic: the `label` column; integers are indices, classes inferred as 0...max.
        let d = try ImageDataset.load(flow + "/train.csv", options: seedOptions())
        XCTAssertEqual(d.classNames, ["0", "1", "2", "3", "4"])
        XCTAssertEqual(d.labels, try NpyArray.read(path: flow + "/dataframe_y.npy").values)
        // Class names given: the indices refer to them.
        var o = seedOptions()
        o.classNames = Self.classes
        let named = try ImageDataset.load(flow + "/train.csv", options: o)
        XCTAssertEqual(named.classNames, Self.classes)
        XCTAssertEqual(named.labels, d.labels)
    }

    func testLabelNamesEmptyAndNAAreUnlabelled() throws {
        let csv = try write("t.csv", "image_id,label\na.jpg,Healthy\nb.jpg,CBB\nc.jpg,\nd.jpg,NA\ne.jpg,CBB\nf.jpg,null\n")
        var o = DatasetOptions()
        o.requireFiles = false
        let d = try ImageDataset.load(csv, options: o)
        XCTAssertEqual(d.classNames, ["CBB", "Healthy"])  // sorted, as Keras sorts class names
        XCTAssertEqual(d.hasLabel, [true, true, false, false, true, false])
        XCTAssertEqual(d.labels, [0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0])
        XCTAssertEqual(d.labelledCount, 3)
        // " CBB " is a class of its own to pandas and Keras: refused rather than read as CBB.
        let spaced = try write("s.csv", "image_id,label\na.jpg,CBB\ne.jpg, CBB \n")
        assertThrows(try ImageDataset.load(spaced, options: o), mentioning: ["s.csv line 3 (e.jpg)", "' CBB '"])
        // Mixed: names and indices of a given class list; "3.0" (pandas with NaN) is index 3.
        let mixed = try write("m.csv", "image_id,label\na.jpg,CMD\nb.jpg,3.0\nc.jpg,0\n")
        o.classNames = Self.classes
        let m = try ImageDataset.load(mixed, options: o)
        XCTAssertEqual(m.labels, [0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0])
    }

    func testUnknownLabelNamesRowAndValue() throws {
        let csv = try write("t.csv", "image_id,label\na.jpg,CBB\nb.jpg,CXX\n")
        var o = DatasetOptions()
        o.requireFiles = false
        o.classNames = Self.classes
        assertThrows(try ImageDataset.load(csv, options: o), mentioning: ["line 3", "b.jpg", "'CXX'", "CBB, CBSD"])
        let outOfRange = try write("r.csv", "image_id,label\na.jpg,5\n")
        assertThrows(try ImageDataset.load(outOfRange, options: o), mentioning: ["line 2", "'5'", "0-4"])
    }

    func testOneHotRows() throws {
        var o = DatasetOptions()
        o.requireFiles = false
        o.labels = .oneHot(["A", "B"])
        let ok = try write("ok.csv", "image_id,A,B\na.jpg,1,0\nb.jpg,NA,NA\nc.jpg,0.25,0.75\nd.jpg,,\n")
        let d = try ImageDataset.load(ok, options: o)
        XCTAssertEqual(d.classNames, ["A", "B"])
        XCTAssertEqual(d.hasLabel, [true, false, true, false])
        XCTAssertEqual(d.labels, [1, 0, 0, 0, 0.25, 0.75, 0, 0])
        let partial = try write("p.csv", "image_id,A,B\na.jpg,1,\n")
        assertThrows(try ImageDataset.load(partial, options: o), mentioning: ["line 2", "a.jpg", "'B'", "empty"])
        let zeros = try write("z.csv", "image_id,A,B\na.jpg,1,0\nb.jpg,0,0\n")
        assertThrows(try ImageDataset.load(zeros, options: o), mentioning: ["line 3", "b.jpg", "0"])
        let text = try write("x.csv", "image_id,A,B\na.jpg,yes,0\n")
        assertThrows(try ImageDataset.load(text, options: o), mentioning: ["line 2", "'A'", "'yes'"])
        let missing = try write("c.csv", "image_id,A\na.jpg,1\n")
        assertThrows(try ImageDataset.load(missing, options: o), mentioning: ["c.csv", "'B'", "columns: image_id, A"])
    }

    func testColumnErrorsAndEmptySplit() throws {
        let csv = try write("t.csv", "file,label\na.jpg,1\n")
        assertThrows(try ImageDataset.load(csv), mentioning: ["t.csv", "'image_id'", "file, label"])
        var o = DatasetOptions()
        o.labels = .column("class")
        o.xColumn = "file"
        assertThrows(try ImageDataset.load(csv, options: o), mentioning: ["'class'"])
        let empty = try write("e.csv", "image_id,label\n")
        assertThrows(try ImageDataset.load(empty), mentioning: ["e.csv", "no rows"])
        let blank = try write("b.csv", "image_id,label\n,1\n")
        assertThrows(try ImageDataset.load(blank), mentioning: ["line 2", "empty"])
        assertThrows(try ImageDataset.load(folder + "/nothing.csv"), mentioning: ["nothing.csv", "no such file"])
    }

    func testMissingImageFileIsNamed() throws {
        try copyImage("images/rgb420.jpg", to: "imgs/a.jpg")
        let csv = try write("t.csv", "image_id,label\na.jpg,0\nb.jpg,1\nc.jpg,1\n")
        var o = DatasetOptions()
        o.imageDirectory = folder + "/imgs"
        assertThrows(try ImageDataset.load(csv, options: o), mentioning: ["image file not found", folder + "/imgs/b.jpg", "1 more: c.jpg"])
        o.requireFiles = false
        XCTAssertEqual(try ImageDataset.load(csv, options: o).count, 3)
        // Default image folder: the CSV's own.
        try copyImage("images/rgb420.jpg", to: "here.jpg")
        let local = try write("l.csv", "image_id\nhere.jpg\n")
        XCTAssertEqual(try ImageDataset.load(local).files.first?.path, folder + "/here.jpg")
    }

    func testWindowsLineEndingsAndByteOrderMark() throws {
        let csv = try write("w.csv", "\u{FEFF}image_id,label\r\na.jpg,1\r\nb.jpg,0\r\n")
        var o = DatasetOptions()
        o.requireFiles = false
        let d = try ImageDataset.load(csv, options: o)
        XCTAssertEqual(d.files.map(\.name), ["a.jpg", "b.jpg"])
        XCTAssertEqual(d.labels, [0, 1, 1, 0])
    }

    func testClassFoldersAsKerasFlowFromDirectory() throws {
        let d = try ImageDataset.load(flow + "/classes")
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: flow + "/flow.json"))) as! [String: Any]
        let directory = expected["directory"] as! [String: Any]
        XCTAssertEqual(d.files.map(\.name), directory["files"] as! [String])
        XCTAssertEqual(d.classNames, ["CBB", "CBSD", "CMD", "Healthy"])
        XCTAssertEqual(d.labels, try NpyArray.read(path: flow + "/directory_y.npy").values)
        // With the model's five classes, CGM (no folder) keeps its place.
        let five = try ImageDataset.fromClassFolders(flow + "/classes", classNames: Self.classes)
        XCTAssertEqual(five.classCount, 5)
        XCTAssertEqual(Array(five.labelRow(3)), [0, 0, 0, 1, 0])  // CMD/1000201771.png
        assertThrows(try ImageDataset.fromClassFolders(flow + "/classes", classNames: ["CBB", "CBSD"]),
                     mentioning: ["'CMD'", "not one of the classes"])
    }

    func testFolderLayouts() throws {
        try copyImage("images/rgb420.jpg", to: "flat/b.jpg")
        try copyImage("images/gray.png", to: "flat/a.png")
        try copyImage("images/gray.png", to: "flat/._a.png")  // macOS resource fork: skipped
        try write("flat/notes.txt", "not an image")
        let flat = try ImageDataset.load(folder + "/flat")
        XCTAssertEqual(flat.files.map(\.name), ["a.png", "b.jpg"])
        XCTAssertEqual(flat.hasLabel, [false, false])
        XCTAssertEqual(flat.classCount, 0)
        try copyImage("images/gray.png", to: "mixed/a.png")
        try copyImage("images/gray.png", to: "mixed/sub/b.png")
        assertThrows(try ImageDataset.load(folder + "/mixed"), mentioning: ["both images and subfolders"])
        var o = DatasetOptions()
        o.folderLayout = .unlabelled
        XCTAssertEqual(try ImageDataset.load(folder + "/mixed", options: o).files.map(\.name), ["a.png", "sub/b.png"])
        o.folderLayout = .classFolders
        XCTAssertEqual(try ImageDataset.load(folder + "/mixed", options: o).classNames, ["sub"])
        try FileManager.default.createDirectory(atPath: folder + "/none", withIntermediateDirectories: true)
        assertThrows(try ImageDataset.load(folder + "/none"), mentioning: ["none", "no JPEG or PNG"])
    }

    func testValidationSplitSharesClasses() throws {
        var o = seedOptions()
        o.classNames = Self.classes
        let train = try ImageDataset.load(flow + "/train.csv", options: o)
        // A folder of unlabelled validation images gets the training split's label width.
        let val = try train.validationSplit(flow + "/images")
        XCTAssertEqual(val.classNames, Self.classes)
        XCTAssertEqual(val.labels.count, 5 * 5)
        // Class folders are read against the training classes.
        XCTAssertEqual(try train.validationSplit(flow + "/classes").classNames, Self.classes)
        // One-hot columns that are not the training classes are refused, naming the missing class.
        var oneHot = seedOptions()
        oneHot.labels = .oneHot(["CBB", "CBSD", "CGM", "CMD"])
        assertThrows(try train.validationSplit(flow + "/train.csv", options: oneHot),
                     mentioning: ["no label column 'Healthy', a class of the training set"])
    }

    func testSubsetAndRemoving() throws {
        let d = try ImageDataset.load(flow + "/train.csv", options: seedOptions())
        let s = d.subset([4, 0])
        XCTAssertEqual(s.files.map(\.name), ["1000812911.jpg", "1000015157.jpg"])
        XCTAssertEqual(Array(s.labelRow(0)), [0, 0, 0, 0, 1])
        let r = try d.removing(paths: [d.files[1].path])
        XCTAssertEqual(r.count, 4)
        XCTAssertFalse(r.files.contains(d.files[1]))
        assertThrows(try d.removing(paths: Set(d.files.map(\.path))), mentioning: ["no usable images"])
        XCTAssertEqual(d.fingerprint, try ImageDataset.load(flow + "/train.csv", options: seedOptions()).fingerprint)
        XCTAssertNotEqual(d.fingerprint, r.fingerprint)
        XCTAssertNotEqual(d.fingerprint, d.subset([1, 0, 2, 3, 4]).fingerprint)
        var relabelled = d
        relabelled.labels[0] = 0.5
        XCTAssertNotEqual(d.fingerprint, relabelled.fingerprint)
    }
}

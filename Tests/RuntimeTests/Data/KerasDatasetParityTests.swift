import Foundation
import XCTest
import TestSupport
@testable import Runtime

/// ImageDataset against what real Keras reads from the same layouts (fixtures/datasets/keras_reads.json,
/// written by fixtures/probe_datasets.py): each layout is rebuilt here and must be read as Keras
/// reads it (files in order, classes, labels), or refused in one line naming the file, row or
/// folder Keras would read differently. Never a silently different split.
final class KerasDatasetParityTests: TemporaryFolderTestCase {
    struct Case {
        var name: String
        var json: [String: Any]
        func keras(_ key: String) -> [String: Any] { json[key] as! [String: Any] }
    }

    static let cases: [String: Case] = {
        let url = fixturesDirectory.appendingPathComponent("datasets/keras_reads.json")
        let root = try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        var out: [String: Case] = [:]
        for c in root["cases"] as! [[String: Any]] { out[c["name"] as! String] = Case(name: c["name"] as! String, json: c) }
        return out
    }()

    /// Rebuilds a case's layout under the test's folder; returns its root.
    func build(_ c: Case) throws -> String {
        let root = (folder as NSString).appendingPathComponent(c.name)
        let fm = FileManager.default
        for relative in c.json["files"] as! [String] {
            let path = (root as NSString).appendingPathComponent(relative)
            if relative.hasSuffix("/") {
                try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
                continue
            }
            try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            XCTAssertTrue(fm.createFile(atPath: path, contents: Data("x".utf8)))
        }
        if let csv = c.json["csv"] as? String {
            try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
            try Data(csv.replacingOccurrences(of: "{ROOT}", with: root).utf8)
                .write(to: URL(fileURLWithPath: root + "/data.csv"))
        }
        return root
    }

    /// Strings compared as their bytes: Swift's == would call a precomposed and a decomposed "é" equal.
    func bytes(_ s: [String]) -> [[UInt8]] { s.map { Array($0.utf8) } }

    func argmax(_ d: ImageDataset) -> [Int] {
        (0..<d.count).map { i in d.labelRow(i).enumerated().max { $0.element < $1.element }!.offset }
    }

    // MARK: folder per class (flow_from_directory, image_dataset_from_directory)

    func assertReadsAsKeras(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let c = Self.cases[name]!
        let k2 = c.keras("tf_keras"), k3 = c.keras("keras3")
        // The two Kerases agree on these layouts; distillctl must read what both read.
        XCTAssertEqual(bytes(k2["files"] as! [String]), bytes(k3["files"] as! [String]), name, file: file, line: line)
        let d = try ImageDataset.load(try build(c))
        XCTAssertEqual(bytes(d.files.map(\.name)), bytes(k2["files"] as! [String]), name, file: file, line: line)
        XCTAssertEqual(bytes(d.classNames), bytes(k2["classes"] as! [String]), name, file: file, line: line)
        XCTAssertEqual(argmax(d), k2["labels"] as! [Int], name, file: file, line: line)
        XCTAssertEqual(d.hasLabel, [Bool](repeating: true, count: d.count), file: file, line: line)
    }

    func testClassFolderOrderIsPythonsCodePointOrder() throws {
        try assertReadsAsKeras("class_order")         // "10" < "2" < "A" < "_u" < "a", decomposed "é" before "f"
        try assertReadsAsKeras("spaces_and_unicode_files")
    }

    /// A precomposed and a decomposed "é" are one String to Swift and two names to Python:
    /// two folders, two classes, in code-point order, also when the training split's names are given.
    func testNormalisationTwinFoldersAreTwoClasses() throws {
        try assertReadsAsKeras("normalisation_twins")
        let c = Self.cases["normalisation_twins"]!
        let keras = c.keras("tf_keras")
        let names = keras["classes"] as! [String]
        XCTAssertEqual(names.count, 3)
        // A validation folder holding only the precomposed one: its images are that class alone.
        let root = try build(c)
        let nfd = "e\u{301}", nfc = "\u{e9}"
        try FileManager.default.removeItem(atPath: root + "/" + nfd)
        var o = DatasetOptions()
        o.classNames = names
        let d = try ImageDataset.load(root, options: o)
        // Read in the given classes' order, as Keras reads flow_from_directory(classes=...).
        XCTAssertEqual(bytes(d.files.map(\.name)), bytes(["f/d.jpg", nfc + "/a.jpg"]))
        let k = names.firstIndex { $0.utf8.elementsEqual(nfc.utf8) }!
        XCTAssertEqual(argmax(d), [(keras["labels"] as! [Int])[2], k])
        // Given only the decomposed name, the precomposed folder is not one of the classes.
        o.classNames = [nfd, "f"]
        assertThrows(try ImageDataset.load(root, options: o), mentioning: ["subfolder '\(nfc)' is not one of the classes"])
    }

    func testNestedSubfoldersInOsWalkOrder() throws {
        try assertReadsAsKeras("nested_subfolders")   // a folder's own files before its subfolders'
    }

    func testJPEGAndPNGAnyCaseOtherFilesIgnoredEmptyClassKept() throws {
        try assertReadsAsKeras("jpeg_png_only")
        try assertReadsAsKeras("empty_class_folder")
    }

    /// Where Keras reads a file or a class that distillctl would skip, the load is refused,
    /// naming it; each refusal is checked against what Keras's record shows it reads.
    func testWhatKerasReadsAndDistillctlWouldSkipIsRefused() throws {
        let refusals: [(String, String, String)] = [
            // case, the entry Keras reads, what the message says
            ("extensions", "cls/g.bmp", "reads JPEG (.jpg, .jpeg) and PNG (.png) only"),
            ("hidden_files", "cls/._a.jpg", "hidden file"),
            ("hidden_subfolder", "cls/.thumbs/t.jpg", "hidden file"),
        ]
        for (name, entry, why) in refusals {
            let c = Self.cases[name]!
            XCTAssertTrue((c.keras("tf_keras")["files"] as! [String]).contains(entry), "\(name): Keras reads \(entry)")
            let root = try build(c)
            assertThrows(try ImageDataset.load(root), mentioning: [root + "/" + entry, why])
        }
        // Keras's other readable names in "extensions", one at a time: each refused by name.
        let ext = Self.cases["extensions"]!
        let read = Set(ext.keras("tf_keras")["files"] as! [String]).union(ext.keras("keras3")["files"] as! [String])
        let root = try build(ext)
        let fm = FileManager.default
        for entry in read.sorted() where !["png", "jpg", "jpeg"].contains((entry as NSString).pathExtension.lowercased()) {
            for other in read where other != entry && !["png", "jpg", "jpeg"].contains((other as NSString).pathExtension.lowercased()) {
                try? fm.removeItem(atPath: root + "/" + other)
            }
            if !fm.fileExists(atPath: root + "/" + entry) { XCTAssertTrue(fm.createFile(atPath: root + "/" + entry, contents: Data("x".utf8))) }
            assertThrows(try ImageDataset.load(root), mentioning: [root + "/" + entry])
        }
        // tf-keras makes a hidden folder a class (index 0, shifting the others); Keras 3 does not.
        let hidden = Self.cases["hidden_class_folder"]!
        XCTAssertEqual(hidden.keras("tf_keras")["classes"] as! [String], [".ipynb_checkpoints", "cat", "dog"])
        XCTAssertNotEqual(hidden.keras("keras3")["classes"] as! [String], hidden.keras("tf_keras")["classes"] as! [String])
        assertThrows(try ImageDataset.load(try build(hidden)), mentioning: ["'.ipynb_checkpoints'", "hidden folder"])
        // Keras ignores images beside the class folders; distillctl asks which layout is meant.
        let top = Self.cases["top_level_images"]!
        XCTAssertFalse((top.keras("tf_keras")["files"] as! [String]).contains("top.jpg"))
        assertThrows(try ImageDataset.load(try build(top)), mentioning: ["both images and subfolders"])
        var o = DatasetOptions()
        o.folderLayout = .classFolders
        let d = try ImageDataset.load(folder + "/top_level_images", options: o)
        XCTAssertEqual(d.files.map(\.name), top.keras("tf_keras")["files"] as! [String])
    }

    /// predict --images DIR lists a folder in the same order.
    func testImageListFolderInKerasOrder() throws {
        for name in ["nested_subfolders", "class_order"] {
            let c = Self.cases[name]!
            let files = try ImageList.load(source: try build(c), imageDir: nil, xColumn: "image_id")
            XCTAssertEqual(bytes(files.map(\.name)), bytes(c.keras("tf_keras")["files"] as! [String]), name)
        }
    }

    /// An unlabelled folder (predict --images DIR, distill --unlabeled) skips hidden entries and
    /// other files but refuses an image it cannot read, by name, rather than leave a silent gap.
    func testUnlabelledFolderRefusesOtherImageFormats() throws {
        let root = (folder as NSString).appendingPathComponent("unlabelled")
        let fm = FileManager.default
        try fm.createDirectory(atPath: root + "/sub", withIntermediateDirectories: true)
        let jpeg = try Data(contentsOf: fixturesDirectory.appendingPathComponent("images/rgb420.jpg"))
        for name in ["a.jpg", "sub/b.JPEG", "._c.jpg", "notes.txt", "xjpg"] { XCTAssertTrue(fm.createFile(atPath: root + "/" + name, contents: jpeg)) }
        XCTAssertEqual(try ImageList.load(source: root, imageDir: nil, xColumn: "image_id").map(\.name), ["a.jpg", "sub/b.JPEG"])
        XCTAssertEqual(try ImageDataset.fromUnlabelledFolder(root).files.map(\.name), ["a.jpg", "sub/b.JPEG"])
        for other in ["sub/d.bmp", "e.TIFF", "f.gif"] {
            XCTAssertTrue(fm.createFile(atPath: root + "/" + other, contents: Data("x".utf8)))
            assertThrows(try ImageList.load(source: root, imageDir: nil, xColumn: "image_id"), mentioning: [root + "/" + other, "JPEG"])
            assertThrows(try ImageDataset.fromUnlabelledFolder(root), mentioning: [root + "/" + other])
            try fm.removeItem(atPath: root + "/" + other)
        }
    }

    /// predict --images CSV: an absolute name is the path itself, as os.path.join makes it.
    func testImageListCSVPathsAsKeras() throws {
        let c = Self.cases["absolute_paths"]!
        let root = try build(c)
        let files = try ImageList.load(source: root + "/data.csv", imageDir: root + "/images", xColumn: "image_id")
        let expected = (c.keras("tf_keras_categorical")["files"] as! [String]).map { $0.replacingOccurrences(of: "{ROOT}", with: root) }
        XCTAssertEqual(files.map(\.path), expected.map { $0.hasPrefix("/") ? $0 : root + "/images/" + $0 })
    }

    // MARK: CSV (pandas.read_csv + flow_from_dataframe)

    func loadCSV(_ c: Case) throws -> (ImageDataset, String) {
        let root = try build(c)
        var o = DatasetOptions()
        o.imageDirectory = root + "/images"
        if let columns = c.json["y_col"] as? [String] { o.labels = .oneHot(columns) } else { o.labels = .column("label") }
        return (try ImageDataset.load(root + "/data.csv", options: o), root)
    }

    func testStringLabelsAsCategorical() throws {
        for name in ["string_labels_unsorted", "bom_crlf", "quoted_commas_spaces", "absolute_paths", "duplicate_rows", "extra_columns"] {
            let c = Self.cases[name]!
            let keras = c.keras("tf_keras_categorical")
            let (d, root) = try loadCSV(c)
            let files = (keras["files"] as! [String]).map { $0.replacingOccurrences(of: "{ROOT}", with: root) }
            XCTAssertEqual(d.files.map(\.name), files, name)
            XCTAssertEqual(d.files.map(\.path), files.map { $0.hasPrefix("/") ? $0 : root + "/images/" + $0 }, name)
            XCTAssertEqual(bytes(d.classNames), bytes(keras["classes"] as! [String]), name)
            XCTAssertEqual(argmax(d), keras["labels"] as! [Int], name)
        }
    }

    /// String labels that differ only in Unicode normalisation: two classes, as pandas and Keras
    /// read them, and looked up by code points when the training split's names are given.
    func testNormalisationTwinLabelsAreTwoClasses() throws {
        let c = Self.cases["labels_normalisation_twins"]!
        let keras = c.keras("tf_keras_categorical")
        let (d, root) = try loadCSV(c)
        XCTAssertEqual(bytes(d.classNames), bytes(keras["classes"] as! [String]))
        XCTAssertEqual(argmax(d), keras["labels"] as! [Int])
        var o = DatasetOptions()
        o.imageDirectory = root + "/images"
        o.classNames = (keras["classes"] as! [String]).reversed()
        let given = try ImageDataset.load(root + "/data.csv", options: o)
        XCTAssertEqual(argmax(given), (keras["labels"] as! [Int]).map { 2 - $0 })
        // One-hot columns named so: pandas keeps two columns; the header is refused, not merged.
        try Data("image_id,\u{e9},e\u{301}\na.jpg,1,0\n".utf8).write(to: URL(fileURLWithPath: root + "/twins.csv"))
        o.classNames = nil
        assertThrows(try ImageDataset.load(root + "/twins.csv", options: o), mentioning: ["twins.csv: columns 2 and 3", "Unicode normalisation"])
    }

    /// Without --y-cols, every column but the file name is a class: one that holds something other
    /// than a probability (a width, a name) is refused by column and row; named columns are read as given.
    func testGuessedLabelColumnsMustHoldProbabilities() throws {
        let c = Self.cases["onehot_extra_numeric_column"]!
        let (named, root) = try loadCSV(c)
        XCTAssertEqual(named.classNames, c.json["y_col"] as! [String])
        var o = DatasetOptions()
        o.imageDirectory = root + "/images"
        assertThrows(try ImageDataset.load(root + "/data.csv", options: o),
                     mentioning: ["data.csv line 2 (a.jpg)", "column 'width' holds '32'", "name the label columns"])
        for (csv, why) in [("image_id,cat,dog,note\na.jpg,1,0,0\nb.jpg,0,1,x\n", "column 'note' holds 'x'"),
                           ("image_id,cat,dog\na.jpg,1,0\nb.jpg,0,-1\n", "column 'dog' holds '-1'")] {
            try Data(csv.utf8).write(to: URL(fileURLWithPath: root + "/guessed.csv"))
            assertThrows(try ImageDataset.load(root + "/guessed.csv", options: o), mentioning: ["guessed.csv line 3 (b.jpg)", why, "name the label columns"])
        }
        // Guessed columns that are probabilities read as Keras reads them named.
        let soft = Self.cases["onehot_columns_not_sorted"]!
        let (d, softRoot) = try loadCSV(soft)
        o.imageDirectory = softRoot + "/images"
        let guessed = try ImageDataset.load(softRoot + "/data.csv", options: o)
        XCTAssertEqual(guessed.classNames, d.classNames)
        XCTAssertEqual(guessed.labels, (soft.keras("tf_keras_raw")["targets"] as! [[Double]]).flatMap { $0 }.map(Float.init))
        // Named columns keep reading any number >= 0 (a soft label of 2).
        let named2 = Self.cases["onehot_soft"]!
        XCTAssertEqual(try loadCSV(named2).0.labels.max(), 2)
    }

    /// Integer labels: Keras's categorical mode refuses them; its raw mode passes the numbers,
    /// which distillctl takes as class indices (the sparse labels a user trains with).
    func testIntegerLabelsAsRawIndices() throws {
        for name in ["integer_labels", "digit_string_labels"] {
            let c = Self.cases[name]!
            XCTAssertNotNil(c.keras("tf_keras_categorical")["error"], name)
            let raw = c.keras("tf_keras_raw")
            let (d, _) = try loadCSV(c)
            XCTAssertEqual(d.files.map(\.name), raw["files"] as! [String], name)
            XCTAssertEqual(argmax(d).map(Double.init), raw["targets"] as! [Double], name)
            XCTAssertEqual(d.classCount, Int((raw["targets"] as! [Double]).max()!) + 1, name)
        }
    }

    /// A missing label cell: pandas makes it NaN, which Keras's categorical mode refuses;
    /// distillctl reads the row as unlabelled (it teaches through the teacher alone).
    func testMissingLabelCellIsUnlabelled() throws {
        let c = Self.cases["missing_label_cell"]!
        XCTAssertNotNil(c.keras("tf_keras_categorical")["error"])
        let targets = c.keras("tf_keras_raw")["targets"] as! [Any]
        let (d, _) = try loadCSV(c)
        XCTAssertEqual(d.hasLabel, targets.map { !($0 is NSNull) })
        XCTAssertEqual(d.classNames, targets.compactMap { $0 as? String }.sorted())
    }

    func testOneHotColumnsAsRaw() throws {
        for name in ["onehot_soft", "onehot_extra_numeric_column", "onehot_columns_not_sorted"] {
            let c = Self.cases[name]!
            let raw = c.keras("tf_keras_raw")
            let (d, _) = try loadCSV(c)
            XCTAssertEqual(d.files.map(\.name), raw["files"] as! [String], name)
            XCTAssertEqual(d.classNames, c.json["y_col"] as! [String], name)
            XCTAssertEqual(d.labels.map(Double.init), (raw["targets"] as! [[Double]]).flatMap { $0 }, name)
        }
    }

    /// A header name with spaces around it is another name to pandas: Keras finds no "label"
    /// column, and neither does distillctl, which names the spaced column rather than reading
    /// other columns as the labels (or the split as unlabelled).
    func testHeaderNameWithSpacesIsNotTheColumn() throws {
        let c = Self.cases["header_with_spaces"]!
        XCTAssertEqual(c.json["pandas_columns"] as! [String], ["image_id", " label"])
        XCTAssertEqual(c.keras("tf_keras_categorical")["error"] as? String, "KeyError: 'label'")
        assertThrows(try loadCSV(c), mentioning: ["data.csv: no column 'label'", "column 2 is ' label'", "pandas keeps"])
        let root = try build(c)
        var o = DatasetOptions()
        o.imageDirectory = root + "/images"
        assertThrows(try ImageDataset.load(root + "/data.csv", options: o), mentioning: ["no column 'label'", "column 2 is ' label'"])
        o.labels = .oneHot(["label"])
        assertThrows(try ImageDataset.load(root + "/data.csv", options: o), mentioning: ["no label column 'label'", "column 2 is ' label'"])
        o.labels = .automatic
        o.xColumn = " image_id"
        assertThrows(try ImageDataset.load(root + "/data.csv", options: o), mentioning: ["no column ' image_id'", "(columns: image_id, ' label')"])
    }

    /// Rows Keras reads differently from what distillctl would: refused, naming the row.
    func testCSVRowsKerasReadsDifferentlyAreRefused() throws {
        // "cat " is a class of its own to Keras; trimming it would merge it into "cat".
        let spaced = Self.cases["labels_with_spaces"]!
        XCTAssertEqual(spaced.keras("tf_keras_categorical")["classes"] as! [String], ["cat", "cat ", "dog"])
        assertThrows(try loadCSV(spaced), mentioning: ["data.csv line 3 (b.jpg)", "'cat '"])
        // " a.jpg" is not a.jpg: Keras drops the row as a missing file; distillctl refuses it.
        for name in ["names_with_spaces", "missing_file_row"] {
            let c = Self.cases[name]!
            let keras = c.keras("tf_keras_categorical")
            XCTAssertFalse((keras["warnings"] as! [String]).isEmpty, name)
            let dropped = Set((c.json["csv"] as! String).split(separator: "\n").dropFirst()
                .map { String($0.split(separator: ",")[0]) }).subtracting(keras["files"] as! [String])
            XCTAssertEqual(dropped.count, 1, name)
            assertThrows(try loadCSV(c), mentioning: ["image file not found", "/images/" + dropped.first!])
        }
    }
}

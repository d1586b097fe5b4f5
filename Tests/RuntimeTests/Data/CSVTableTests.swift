import Foundation
import XCTest
import TestSupport
@testable import Runtime

/// The CSV reader against what pandas' read_csv and R's read.csv accept, and its errors: file,
/// line and column, at most one line of the file shown.
final class CSVTableTests: TemporaryFolderTestCase {
    func testQuotingBlankLinesAndLineNumbers() throws {
        // A quoted field with a comma, an escaped quote and a newline; blank lines between and after
        // rows (pandas' skip_blank_lines); a short row (the rest missing, as pandas reads it).
        let text = "image_id,note\n\"a,1.jpg\",\"say \"\"hi\"\"\"\n\n\"b.jpg\",\"two\nlines\"\nc.jpg\n\n   \n"
        let table = try CSVTable.parse(text, path: "t.csv")
        XCTAssertEqual(table.header, ["image_id", "note"])
        XCTAssertEqual(table.rows.map { $0["image_id"] }, ["a,1.jpg", "b.jpg", "c.jpg"])
        XCTAssertEqual(table.rows.map { $0["note"] }, ["say \"hi\"", "two\nlines", ""])
        XCTAssertEqual(table.lines, [2, 4, 6])
    }

    func testErrorsNameFileLineAndColumnWithOneLineOfContext() throws {
        let rest = (0..<200).map { "row\($0).jpg,1" }.joined(separator: "\n")
        let unterminated = try write("u.csv", "image_id,label\na.jpg,1\nb.jpg,\"1\n" + rest + "\n")
        assertThrows(try CSVTable.read(path: unterminated), mentioning: [unterminated + " line 3, column 2: unterminated quote", "'b.jpg,\"1'"])
        XCTAssertThrowsError(try CSVTable.read(path: unterminated)) { XCTAssertFalse("\($0)".contains("row7.jpg"), "\($0)") }
        let wide = try write("w.csv", "image_id,label\na.jpg,1,extra\n")
        assertThrows(try CSVTable.read(path: wide), mentioning: [wide + " line 2, column 3: 3 fields, the header has 2", "'a.jpg,1,extra'"])
        // A name twice: pandas keeps two columns (the second 'cat.1'); one here would drop one.
        let twice = try write("d.csv", "image_id,cat,dog,cat\na.jpg,1,0,0\n")
        assertThrows(try CSVTable.read(path: twice), mentioning: [twice + ": columns 2 and 4 are both named 'cat'", "'cat.1'"])
        // Empty names (trailing commas) are not one name twice: pandas reads them as 'Unnamed: 2'
        // and 'Unnamed: 3', and the label column beside them is read as written.
        let trailing = try write("e.csv", "image_id,label,,\na.jpg,cat,,\nb.jpg,dog,,\n")
        let table = try CSVTable.read(path: trailing)
        XCTAssertEqual(table.header, ["image_id", "label", "", ""])
        XCTAssertEqual(table.rows.map { $0["label"] }, ["cat", "dog"])
        var o = DatasetOptions()
        o.requireFiles = false
        XCTAssertEqual(try ImageDataset.fromCSV(trailing, options: o).classNames, ["cat", "dog"])
        // Header names as written (pandas keeps the spaces), and a lookup that misses names the
        // column that differs only by them.
        let spaced = try CSVTable.read(path: try write("s.csv", "image_id , label\na.jpg,cat\n"))
        XCTAssertEqual(spaced.header, ["image_id ", " label"])
        assertThrows(try spaced.column("label"), mentioning: ["no column 'label' (columns: 'image_id ', ' label')", "column 2 is ' label'"])
        let afterQuote = try write("q.csv", "image_id,label\n\"a.jpg\"x,1\n")
        assertThrows(try CSVTable.read(path: afterQuote), mentioning: [afterQuote + " line 2, column 1: text after the closing quote"])
        let long = try write("l.csv", "image_id,label\n\"" + String(repeating: "x", count: 500) + "\n")
        XCTAssertThrowsError(try CSVTable.read(path: long)) { XCTAssertLessThan("\($0)".count, 300, "\($0)") }
    }

    /// Validation classes are matched by name in any order; other spellings are refused by name.
    func testValidationClassesByName() throws {
        let train = try write("train.csv", "image_id,cat,dog,bird\na.jpg,1,0,0\nb.jpg,0,1,0\nc.jpg,0,0,1\n")
        var o = DatasetOptions()
        o.requireFiles = false
        let trainSet = try ImageDataset.load(train, options: o)
        let reordered = try write("v1.csv", "bird,image_id,dog,cat\n1,c.jpg,0,0\n0,a.jpg,0,1\n")
        let v = try trainSet.validationSplit(reordered, options: o)
        XCTAssertEqual(v.classNames, ["cat", "dog", "bird"])
        XCTAssertEqual(v.labels, [0, 0, 1, 1, 0, 0])
        let misspelled = try write("v2.csv", "image_id,Cat,dog,bird\na.jpg,1,0,0\n")
        assertThrows(try trainSet.validationSplit(misspelled, options: o), mentioning: [misspelled + ": label column 'Cat' is not a class of the training set (cat, dog, bird)"])
        let fewer = try write("v3.csv", "image_id,dog,bird\na.jpg,1,0\n")
        assertThrows(try trainSet.validationSplit(fewer, options: o), mentioning: [fewer + ": no label column 'cat', a class of the training set"])
    }
}

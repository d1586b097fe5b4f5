import Foundation
import XCTest
@testable import Graph

/// Reading and writing a config keeps what Foundation would lose: float-ness (2.0) and exact
/// numbers (its Linux parser misrounds 0.00392156862745098); output is pure ASCII with Python's
/// separators.
final class JSONTextTests: XCTestCase {
    func roundTrip(_ text: String) throws -> String {
        try JSONText.string(try JSONReader.parse(text, source: "test"))
    }

    func testNumbersKeepTheirKindAndValue() throws {
        XCTAssertEqual(try roundTrip("[2.0, 2, 1e-05, 0.00392156862745098, 0.48500001430511475, true, false, null]"),
                       "[2.0, 2, 1e-05, 0.00392156862745098, 0.48500001430511475, true, false, null]")
        XCTAssertEqual(try roundTrip("[1.001e-05, 12345678901234, -0.5, 1E+300, -0, NaN]"),
                       "[1.001e-05, 12345678901234, -0.5, 1E+300, -0, NaN]")
        XCTAssertEqual(try roundTrip(#"{"a": {"b": [[], {}]}, "s": "x\u00e9\"y"}"#), #"{"a": {"b": [[], {}]}, "s": "x\u00e9\"y"}"#)
        // New floats (e.g. Normalization statistics) parse back to the same double, bit for bit.
        for value in [0.1, 1.0 / 3.0, Double(Float(0.229)), Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude] {
            let text = try JSONText.string([NSNumber(value: value)])
            let back = try XCTUnwrap(JSONReader.parse(text, source: "test") as? [Any])
            XCTAssertEqual((back[0] as? JSONDecimal)?.value.bitPattern, value.bitPattern, text)
        }
    }

    func testReaderGivesFoundationContainers() throws {
        let value = try XCTUnwrap(JSONReader.parse(#"{"n": 3, "t": true, "x": null, "l": ["é"]}"#, source: "t") as? [String: Any])
        XCTAssertEqual((value["n"] as? NSNumber)?.intValue, 3)
        XCTAssertTrue(isJSONBool(value["t"]!))
        XCTAssertTrue(value["x"] is NSNull)
        XCTAssertEqual(value["l"] as? [String], ["é"])
        for bad in ["{", "[1,]", "{\"a\" 1}", "tru", "\"abc", "1 2"] {
            XCTAssertThrowsError(try JSONReader.parse(bad, source: "bad.json"), bad) { error in
                XCTAssertTrue(String(describing: error).hasPrefix("bad.json: not valid JSON"), "\(error)")
            }
        }
    }

    func testStringsAreEscapedToASCII() throws {
        XCTAssertEqual(try JSONText.string(["a\"b\\c\nd\u{1}é😀"]), #"["a\"b\\c\nd\u0001\u00e9\ud83d\ude00"]"#)
    }

    func testKerasKeysComeFirst() throws {
        let text = try JSONText.string(["inbound_nodes": [Any](), "name": "x", "config": [String: Any](), "class_name": "Dense",
                                        "zeta": 1, "alpha": 2])
        XCTAssertEqual(text, #"{"class_name": "Dense", "config": {}, "name": "x", "inbound_nodes": [], "alpha": 2, "zeta": 1}"#)
    }

    func testNonFiniteNumbersAreRefused() {
        XCTAssertThrowsError(try JSONText.string([NSNumber(value: Double.nan)]))
    }
}

import Foundation
import TestSupport
import XCTest
@testable import Graph

/// What the operation layers of tensor_ops_math do not map onto is refused in one line naming the
/// layer and what is not supported, never computed differently: each edit below is made to the
/// config real Keras wrote.
final class OperationRefusalTests: XCTestCase {
    func refusal(_ caseName: String, _ replace: String, _ with: String,
                 file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == caseName })
        let text = try String(contentsOfFile: c.path(c.arch)!, encoding: .utf8)
        XCTAssertTrue(text.contains(replace), "\(caseName): no \(replace)", file: file, line: line)
        do {
            _ = try ModelConfigParser.parse(json: text.replacingOccurrences(of: replace, with: with), source: caseName)
            XCTFail("\(caseName): parsed with \(with)", file: file, line: line)
            return ""
        } catch {
            let message = String(describing: error)
            XCTAssertFalse(message.contains("\n"), message, file: file, line: line)
            return message
        }
    }

    func expect(_ message: String, _ parts: String..., file: StaticString = #filePath, line: UInt = #line) {
        for p in parts { XCTAssertTrue(message.contains(p), "\(message) lacks \(p)", file: file, line: line) }
    }

    func testTfKerasOperations() throws {
        let k2 = "k2_tensor_ops_math"
        let first = #"{"slice_spec": [{"start": null, "stop": null, "step": null}, {"start": 1, "stop": 8, "step": null}"#
        expect(try refusal(k2, first, #"{"slice_spec": [{"start": null, "stop": null, "step": null}, null, {"start": 1, "stop": 8, "step": null}"#),
               "'tf.__operators__.getitem'", "new axis")
        expect(try refusal(k2, first, #"{"slice_spec": [{"start": 1, "stop": null, "step": null}, {"start": 1, "stop": 8, "step": null}"#),
               "'tf.__operators__.getitem'", "batch axis")
        expect(try refusal(k2, first, #"{"slice_spec": [{"class_name": "__ellipsis__"}, {"class_name": "__ellipsis__"}, {"start": 1, "stop": 8, "step": null}"#),
               "'tf.__operators__.getitem'", "more than one ellipsis")
        expect(try refusal(k2, first, #"{"slice_spec": [{"start": null, "stop": null, "step": null}, {"start": 1, "stop": 8, "step": 0}"#),
               "'tf.__operators__.getitem'", "step 0")
        expect(try refusal(k2, first, #"{"slice_spec": [{"start": null, "stop": null, "step": null}, {"start": 1, "stop": 1, "step": null}"#),
               "'tf.__operators__.getitem'", "empty")
        expect(try refusal(k2, #"{"size": [9, 7]}"#, #"{"size": [9, 7], "antialias": true}"#), "'tf.image.resize'", "antialias")
        expect(try refusal(k2, #"{"size": [9, 7]}"#, #"{"size": [9, 7], "method": "lanczos3"}"#), "'tf.image.resize'", "lanczos3")
        expect(try refusal(k2, #"{"size": [9, 7]}"#, #"{"size": [9, 7], "preserve_aspect_ratio": true}"#),
               "'tf.image.resize'", "preserve_aspect_ratio")
        expect(try refusal(k2, #"{"axis": [1, 2], "keepdims": true}"#, #"{"axis": [3], "keepdims": true}"#),
               "'tf.math.reduce_sum'", "axes [3]")
        expect(try refusal(k2, #""function": "math.log""#, #""function": "math.log1p""#), "'tf.math.log'", "math.log1p")
    }

    func testKeras3Operations() throws {
        let k3 = "k3_tensor_ops_math"
        let first = #"[{"class_name": "__slice__", "config": {"start": null, "stop": null, "step": null}}, {"class_name": "__slice__", "config": {"start": 1, "stop": 8"#
        expect(try refusal(k3, first, #"[{"class_name": "__slice__", "config": {"start": null, "stop": null, "step": null}}, null, {"class_name": "__slice__", "config": {"start": 1, "stop": 8"#),
               "'get_item'", "new axis")
        expect(try refusal(k3, #""size": [9, 7], "interpolation": "bilinear", "antialias": false"#,
                           #""size": [9, 7], "interpolation": "bilinear", "antialias": true"#), "'resize'", "antialias")
        expect(try refusal(k3, #""pad_to_aspect_ratio": false, "fill_mode": "constant", "fill_value": 0.0, "data_format": null}, "registered_name": "Resize", "name": "resize""#,
                           #""pad_to_aspect_ratio": true, "fill_mode": "constant", "fill_value": 0.0, "data_format": null}, "registered_name": "Resize", "name": "resize""#),
               "'resize'", "pad_to_aspect_ratio")
        expect(try refusal(k3, #""name": "sum", "axis": [1, 2]"#, #""name": "sum", "axis": [-1]"#), "'sum'", "axes [-1]")
    }
}

import Foundation
import TestSupport
import XCTest
@testable import Graph

/// What fuzzing found in the config parser (fixtures/fuzz/regressions/*.json, made by
/// fixtures/fuzz/make_seeds.py): each crashed the process before; each is now one clean error.
final class FuzzRegressionTests: XCTestCase {
    func parseError(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let path = fixturesDirectory.appendingPathComponent("fuzz/regressions/\(name)").path
        // As a model file's model_config reaches the parser: decoded leniently (fuzzer outputs
        // need not be UTF-8).
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
        do {
            _ = try ModelConfigParser.parse(json: text, source: path)
            XCTFail("\(name) parsed", file: file, line: line)
            return ""
        } catch let error as GraphError {
            XCTAssertFalse(error.message.contains("\n"), error.message, file: file, line: line)
            return error.message
        }
    }

    func testStridesOfZeroAreRefused() throws {
        XCTAssertEqual(try parseError("conv_strides_zero.json"),
                       "layer 'conv2d' of class 'Conv2D': 'strides' is [0, 1], expected positive integers")
    }

    func testHugeIntegersAreRefused() throws {
        XCTAssertEqual(try parseError("conv_filters_1e300.json"),
                       "layer 'conv2d' of class 'Conv2D': 'filters' is not an integer (or is beyond 2147483648)")
        XCTAssertTrue(try parseError("inbound_node_1e19.json").contains("layer 'gap': inbound tensor"))
    }

    func testNegativeTensorIndexIsRefused() throws {
        XCTAssertEqual(try parseError("inbound_tensor_minus_one.json"),
                       "model 'multi_io': layer 'gap' uses output -1 of 'conv', which has 1")
    }

    /// A Permute reached with a rank-0 input (the fuzzer had mangled the InputLayer's "config"
    /// key): `1...0` trapped.
    func testPermuteOfAScalarIsRefused() throws {
        XCTAssertEqual(try parseError("permute_of_a_scalar.json"),
                       "layer 'permute_hw' of class 'Permute': dims [2, 1, 3] is not a permutation of the input's 0 axes (None)")
    }

    /// Sizes past 2^40 values are refused before any count overflows (found while fixing the above:
    /// a Flatten of a huge input, or Dense units 2^31 after it).
    func testImplausibleShapesAreRefused() throws {
        let huge = """
        {"class_name": "Sequential", "config": {"name": "s", "layers": [
          {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 2147483648, 2147483648, 3], "name": "in"}},
          {"class_name": "Flatten", "config": {"name": "flat"}}]}}
        """
        XCTAssertThrowsError(try ModelConfigParser.parse(json: huge, source: "huge.json")) { error in
            XCTAssertEqual(String(describing: error), "layer 'flat' of class 'Flatten': flattens (None, 2147483648, 2147483648, 3), too many values")
        }
        let wide = """
        {"class_name": "Sequential", "config": {"name": "s", "layers": [
          {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 2147483648], "name": "in"}},
          {"class_name": "Dense", "config": {"name": "d", "units": 2147483648}}]}}
        """
        XCTAssertThrowsError(try ModelConfigParser.parse(json: wide, source: "wide.json")) { error in
            XCTAssertTrue(String(describing: error).hasPrefix("layer 'd' of class 'Dense': weight 'kernel' of shape (2147483648, 2147483648) is not plausible"),
                          String(describing: error))
        }
    }
}

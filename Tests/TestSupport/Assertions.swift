import Foundation
import XCTest

/// Folder of the committed fixtures (`fixtures/` at the package root).
public let fixturesDirectory: URL = {
    URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures")
}()

/// Compares two float arrays element-wise. On failure prints the max absolute difference and the
/// first index past the tolerance, so a failing test says where to look.
@discardableResult
public func assertClose<A: Collection, B: Collection>(
    _ actual: A, _ expected: B, tolerance: Double, _ message: String = "",
    file: StaticString = #filePath, line: UInt = #line
) -> Double where A.Element: BinaryFloatingPoint, B.Element: BinaryFloatingPoint {
    guard actual.count == expected.count else {
        XCTFail("\(message): count \(actual.count) != expected \(expected.count)", file: file, line: line)
        return .infinity
    }
    var maxDiff = 0.0
    var firstBad: Int? = nil
    for (i, (a, e)) in zip(actual, expected).enumerated() {
        let d = abs(Double(a) - Double(e))
        if d.isNaN || d > tolerance, firstBad == nil { firstBad = i }
        if d.isNaN { maxDiff = .nan } else if !maxDiff.isNaN { maxDiff = max(maxDiff, d) }
    }
    if let bad = firstBad {
        let a = Double(actual[actual.index(actual.startIndex, offsetBy: bad)])
        let e = Double(expected[expected.index(expected.startIndex, offsetBy: bad)])
        XCTFail("\(message): max |diff| \(maxDiff) > \(tolerance); first bad index \(bad): \(a) vs \(e)",
                file: file, line: line)
    }
    return maxDiff
}

import XCTest
final class PlaceholderdistillctlTests: XCTestCase { func testNothing() {} }

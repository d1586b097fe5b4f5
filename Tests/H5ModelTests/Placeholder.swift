import XCTest
final class PlaceholderH5ModelTests: XCTestCase { func testNothing() {} }

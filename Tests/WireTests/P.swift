import XCTest
final class WirePlaceholder: XCTestCase { func testNothing() {} }

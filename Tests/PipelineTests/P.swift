import XCTest
final class PipelinePlaceholder: XCTestCase { func testNothing() {} }

import Foundation
import XCTest
@testable import Model
@testable import Numerics

final class SafeTensorsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("attnres-st-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func testRoundTripInSwift() throws {
        var f = SafeTensors()
        f.add("a.weight", Tensor(shape: [2, 3], data: [1, -2, 3.5, 0, .pi, -0.0]))
        f.add("tokens", int32: [1, 2, 3, -4], shape: [2, 2])
        f.metadata = ["k": "v"]
        let bytes = try f.serialized()
        let g = try SafeTensors(bytes: bytes)
        XCTAssertEqual(g.names, ["a.weight", "tokens"])
        XCTAssertEqual(try g.entries["a.weight"]!.floats(), Tensor(shape: [2, 3], data: [1, -2, 3.5, 0, .pi, -0.0]))
        XCTAssertEqual(try g.entries["tokens"]!.int32s(), [1, 2, 3, -4])
        XCTAssertEqual(g.metadata, ["k": "v"])
        XCTAssertThrowsError(try g.entries["tokens"]!.floats())
    }

    func testMalformedFilesAreRejected() throws {
        XCTAssertThrowsError(try SafeTensors(bytes: [1, 2, 3]))
        XCTAssertThrowsError(try SafeTensors(bytes: [200, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0x7D]))  // header beyond file
        var f = SafeTensors(); f.add("x", Tensor(zeros: [4]))
        var bytes = try f.serialized(); bytes.removeLast()
        XCTAssertThrowsError(try SafeTensors(bytes: bytes))  // tensor data truncated
    }

    /// Files written by Python's `safetensors` are read by us, and files we write are read by it, values intact.
    func testInteroperatesWithPythonSafetensors() throws {
        try PythonEnvironment.require(modules: ["safetensors", "numpy"], packages: ["safetensors", "numpy"])
        let fromPython = directory.appendingPathComponent("py.safetensors").path
        _ = try PythonEnvironment.script("""
            import sys, numpy as np
            from safetensors.numpy import save_file
            save_file({"w": (np.arange(12, dtype=np.float32).reshape(3, 4) / 7 - 0.5),
                       "ids": np.array([[5, -1, 7]], dtype=np.int32),
                       "scalarish": np.array([1e-30, 3e38], dtype=np.float32)}, sys.argv[1], metadata={"m": "1"})
            """, args: [fromPython])
        let read = try SafeTensors(contentsOf: URL(fileURLWithPath: fromPython))
        let w = try read.entries["w"]!.floats()
        XCTAssertEqual(w.shape, [3, 4])
        for i in 0..<12 { XCTAssertEqual(w.data[i], Float(i) / 7 - 0.5) }
        XCTAssertEqual(try read.entries["ids"]!.int32s(), [5, -1, 7])
        XCTAssertEqual(try read.entries["scalarish"]!.floats().data, [1e-30, 3e38])
        XCTAssertEqual(read.metadata["m"], "1")

        var mine = SafeTensors()
        mine.add("layers.1.attn.wq", Tensor(shape: [2, 2], data: [0.25, -1.5, 3, 1e-7]))
        mine.add("tokens", int32: [0, 255, 17], shape: [1, 3])
        let fromSwift = directory.appendingPathComponent("swift.safetensors")
        try mine.write(to: fromSwift)
        let out = try PythonEnvironment.script("""
            import sys, numpy as np
            from safetensors.numpy import load_file
            t = load_file(sys.argv[1])
            assert t["layers.1.attn.wq"].dtype == np.float32 and t["layers.1.attn.wq"].shape == (2, 2)
            assert (t["layers.1.attn.wq"] == np.array([[0.25, -1.5], [3, 1e-7]], dtype=np.float32)).all()
            assert t["tokens"].dtype == np.int32 and t["tokens"].tolist() == [[0, 255, 17]]
            print("ok")
            """, args: [fromSwift.path])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), "ok")
    }
}

import Foundation
import XCTest
import Numerics

/// `attnres bench model --profile VARIANT` (one variant alone, for callgrind) under each depth-attention kernel the CPU
/// has, and the `ATTNRES_DEPTH_KERNEL` override: honoured, and a bad value reported without stopping the run.
final class BenchProfileTests: XCTestCase {
    let tiny = ["--layers", "2", "--hidden", "16", "--heads", "2", "--seq", "8", "--blocks", "2", "--repetitions", "1"]

    func testProfileRunsOneVariantWithTheRequestedKernel() throws {
        for kernel in DepthKernel.available {
            for variant in ["train-block", "infer-block-twoPhase"] {
                let r = try CLIProcess.run(["bench", "model", "--profile", variant] + tiny, timeout: 120,
                                           environment: [DepthKernel.variable: kernel.rawValue])
                XCTAssertEqual(r.status, 0, r.stderr)
                XCTAssertTrue(r.stdout.contains("profile \(variant) × 1 | depth kernel \(kernel)"), r.stdout)
                XCTAssertTrue(r.stdout.contains("checksum"), r.stdout)
                XCTAssertFalse(r.stdout.contains("(a) train step"), "a profile run times nothing else:\n\(r.stdout)")
            }
        }
        CLIProcess.assertNoOrphans()
    }

    func testABadKernelRequestIsReportedAndTheAutomaticChoiceUsed() throws {
        let r = try CLIProcess.run(["bench", "model", "--profile", "infer-block-onePass"] + tiny, timeout: 120,
                                   environment: [DepthKernel.variable: "sse9"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("ATTNRES_DEPTH_KERNEL=sse9 names no depth-attention kernel"), r.stderr)
        let automatic: DepthKernel = DepthKernel.avx512.isAvailable ? .avx512 : DepthKernel.avx2.isAvailable ? .avx2 : .baseline
        XCTAssertTrue(r.stdout.contains("depth kernel \(automatic)"), r.stdout)
    }

    func testAnUnknownVariantIsRefused() throws {
        let r = try CLIProcess.run(["bench", "model", "--profile", "train-bogus"], timeout: 60)
        XCTAssertNotEqual(r.status, 0)
        XCTAssertLessThan(r.status, 128, r.stderr)
        XCTAssertTrue(r.stderr.contains("train-bogus"), r.stderr)
    }
}

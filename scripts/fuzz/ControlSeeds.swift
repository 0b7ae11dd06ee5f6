// Seed inputs of the control-message target: one control frame of every message, built with `ControlFrame.encode`.
// The only file of the fuzzers that constructs control messages (so the only one to adapt when their cases
// change); `@testable` because run specs have no public memberwise initialiser.
@testable import Cluster
import Pipeline
import Wire

enum ControlMessageSeeds {
    static func all() throws -> [(name: String, bytes: [UInt8])] {
        var spec = RunSpec(topology: Topology(), variant: 1)
        spec.trace = true
        spec.saveDirectory = "/tmp/attnres-save"
        let link = LinkCount(src: 0, dst: 1, direction: .forward, kind: .block, payloadBytes: 655_360, tensors: 40)
        let report = WorkerReport(rank: 1, received: [link], sent: [link], headerBytesSent: 2_912, messagesSent: 64,
                                  peakCachedBytes: 262_144, tensorsPerHop: [0: 2, 4: 3], computeSeconds: 0.25, waitSeconds: 0.5,
                                  trace: nil, variant: 1)
        let toWorker: [(String, ToWorker)] = [
            ("to-welcome", .welcome(rank: 2, version: Int(Frame.version))),
            ("to-refused", .refused(reason: "rank 2 has joined already", versions: ControlProtocol.versions)),
            ("to-setup-ipc", .setup(transport: .ipc, ipcDirectory: "/tmp/attnres-abc123", address: nil, ranks: 4, maxFrameBytes: 1 << 26)),
            ("to-setup-tcp", .setup(transport: .tcp, ipcDirectory: "", address: RankAddress(host: "127.0.0.1", port: 6000), ranks: 2,
                                    maxFrameBytes: 1 << 20)),
            ("to-connect", .connect(endpoints: ["ipc:///tmp/attnres-abc123/rank-0.data", "tcp://127.0.0.1:6001"])),
            ("to-run-default", .run(RunSpec(topology: Topology(), variant: 0))),
            ("to-run-traced", .run(spec)),
            ("to-heartbeat", .heartbeat),
            ("to-shutdown", .shutdown),
        ]
        let fromWorker: [(String, FromWorker)] = [
            ("from-hello", .hello(rank: 0, pid: 4242, host: "node-1", versions: ControlProtocol.versions)),
            ("from-hello-launcher", .hello(rank: 2, pid: 4243, host: "node-3", versions: ControlProtocol.versions,
                                           worldSize: .init(size: 4, variable: "SLURM_NTASKS"))),
            ("from-bound", .bound(rank: 3, endpoint: "tcp://127.0.0.1:41234")),
            ("from-ready", .ready(rank: 2)),
            ("from-step-done", .stepDone(rank: 1, variant: 0, step: 1, loss: 5.5)),
            ("from-step-done-shape", .stepDone(rank: 1, variant: 2, step: 0, loss: nil)),
            ("from-report", .report(report)),
            ("from-failed", .failed(rank: 1, message: "worker rank 1: rejected a data message")),
            ("from-heartbeat", .heartbeat(rank: 3)),
        ]
        return try toWorker.map { ($0.0, try ControlFrame.encode($0.1).array) } + fromWorker.map { ($0.0, try ControlFrame.encode($0.1).array) }
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func controlMessageFuzzInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutableRawPointer?) -> CInt {
    SeedWriter.writeIfAsked(ControlMessageSeeds.all)
    return 0
}

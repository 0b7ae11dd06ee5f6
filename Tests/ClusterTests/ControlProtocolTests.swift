import Foundation
import XCTest
@testable import Cluster
@testable import Pipeline
@testable import Wire

/// The control protocol as docs/protocol.md and docs/schemas/ specify it: every message kind against its JSON
/// Schema (python3 `jsonschema`), the schemas' examples decoded back, the golden control frames, the topology
/// under the YAML's keys, and the coordinator's and the worker's admission rules, without sockets.
final class ControlProtocolTests: XCTestCase {
    static let schemas = packageRoot.appendingPathComponent("docs/schemas")

    /// One message of every kind, with optional fields both present and absent.
    static func goldenToWorker() -> [ToWorker] {
        var t = Topology()
        t.source = "topologies/local-4x2.yaml"
        var tcp = t
        tcp.transport = .tcp
        tcp.addresses = (0..<4).map { RankAddress(host: "10.0.0.\($0 + 2)", port: 6000) }
        tcp.residual = .full
        tcp.coordinator = "tcp://10.0.0.1:5555"
        var curve = tcp
        curve.curveDirectory = "/etc/attnres/keys"
        let keys = (0..<4).map { _ in try! CurveKeyPair.generate().publicKey }
        return [
            .welcome(rank: 1, version: 2),
            .refused(reason: "rank 1 has already joined", versions: [2]),
            .setup(transport: .ipc, ipcDirectory: "/tmp/attnres-x", address: nil, ranks: 4, maxFrameBytes: 16384),
            .setup(transport: .tcp, ipcDirectory: "/tmp/attnres-x", address: RankAddress(host: "127.0.0.1", port: 0), ranks: 4, maxFrameBytes: 16384),
            .connect(endpoints: ["ipc:///tmp/a/rank-0.data", "ipc:///tmp/a/rank-1.data"]),
            .run(RunSpec(topology: t, variant: 0)),
            .run(RunSpec(topology: tcp, variant: 6, firstStep: 20, resumeDirectory: "in", saveDirectory: "out", trace: true)),
            .run(RunSpec(topology: tcp, variant: 7, firstStep: 4, resumeDirectory: "in", saveDirectory: "out", checkpointEvery: 1)),
            .setup(transport: .tcp, ipcDirectory: "/tmp/attnres-x", address: nil, ranks: 4, maxFrameBytes: 16384, curvePublicKeys: keys),
            .run(RunSpec(topology: curve, variant: 0)),
            .heartbeat,
            .shutdown,
        ]
    }

    static func goldenFromWorker() -> [FromWorker] {
        let link = LinkCount(src: 0, dst: 1, direction: .forward, kind: .block, payloadBytes: 16384, tensors: 1)
        let report = WorkerReport(rank: 1, received: [link], sent: [LinkCount(src: 1, dst: 0, direction: .backward, kind: .partial, payloadBytes: 8, tensors: 1)],
                                  headerBytesSent: 56, messagesSent: 1, peakCachedBytes: 0, tensorsPerHop: [1: 3, 5: 2],
                                  computeSeconds: 0.5, waitSeconds: 0.25, variant: 3)
        var traced = report
        traced.trace = [TraceRecord(kind: .send, start: 1, end: 2, step: 0, chunk: -1, microbatch: 0, hop: 1, backward: false, peer: 2, bytes: 8)]
        var perStep = report
        perStep.waitSecondsPerStep = [0.125, 0.125]
        return [
            .hello(rank: 0, pid: 4242, host: "node1", versions: [2]),
            .hello(rank: 3, pid: 77, host: "node4", versions: [2], worldSize: .init(size: 4, variable: "SLURM_NTASKS")),
            .bound(rank: 1, endpoint: "tcp://127.0.0.1:41234"),
            .ready(rank: 2),
            .stepDone(rank: 3, variant: 0, step: 1, loss: nil),
            .stepDone(rank: 3, variant: 0, step: 0, loss: 5.5),
            .report(report),
            .report(traced),
            .report(perStep),
            .failed(rank: 2, message: "it broke"),
            .heartbeat(rank: 1),
        ]
    }

    static func json<T: Encodable>(_ value: T) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(ControlFrame.body(of: try ControlFrame.encode(value)))) as! [String: Any]
    }

    /// Every golden message is valid against the schema its `type` names; every schema example decodes.
    func testEveryMessageKindMatchesItsSchema() throws {
        let messages: [[String: Any]] = try ControlProtocolTests.goldenToWorker().map(ControlProtocolTests.json)
            + ControlProtocolTests.goldenFromWorker().map(ControlProtocolTests.json)
        let kinds = Set(messages.map { $0["type"] as! String })
        let files = try FileManager.default.contentsOfDirectory(atPath: ControlProtocolTests.schemas.path).filter { $0.hasSuffix(".schema.json") }
        XCTAssertEqual(kinds, Set(files.map { String($0.dropLast(".schema.json".count)) }), "one schema per message kind, and no other")
        XCTAssertFalse(messages.contains { String(data: try! JSONSerialization.data(withJSONObject: $0), encoding: .utf8)!.contains("_0") })
        let input = try JSONSerialization.data(withJSONObject: messages)
        let out = try Python.run(ControlProtocolTests.validator, args: [ControlProtocolTests.schemas.path], input: input)
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), "\(messages.count) valid", out)

        // A message the schema rejects: the validator is not a rubber stamp.
        var bad = try ControlProtocolTests.json(FromWorker.stepDone(rank: 0, variant: 0, step: 1, loss: nil))
        bad["step"] = -1
        bad["extra"] = true
        let rejected = try Python.run(ControlProtocolTests.validator, args: [ControlProtocolTests.schemas.path],
                                      input: try JSONSerialization.data(withJSONObject: [bad]), expectFailure: true)
        XCTAssertTrue(rejected.contains("step_done"), rejected)

        // Each schema's examples decode as the side that receives them, and re-encode to the same JSON.
        let toWorker: Set = ["welcome", "refused", "setup", "connect", "run", "heartbeat", "shutdown"]
        for file in files {
            let schema = try JSONSerialization.jsonObject(with: Data(contentsOf: ControlProtocolTests.schemas.appendingPathComponent(file))) as! [String: Any]
            let examples = try XCTUnwrap(schema["examples"] as? [[String: Any]], file)
            XCTAssertFalse(examples.isEmpty, file)
            for e in examples {
                let frame = Message(bytes: Frame.magic + [2, 0, 16, 0] + Array(try JSONSerialization.data(withJSONObject: e)))
                let kind = e["type"] as! String
                let again: [String: Any]
                if toWorker.contains(kind) && !(kind == "heartbeat" && e["rank"] != nil) {
                    again = try ControlProtocolTests.json(try ControlFrame.decode(ToWorker.self, from: frame))
                } else {
                    again = try ControlProtocolTests.json(try ControlFrame.decode(FromWorker.self, from: frame))
                }
                XCTAssertEqual(NSDictionary(dictionary: again), NSDictionary(dictionary: e), "\(file): \(e)")
            }
        }
    }

    /// Reads a JSON array of messages on stdin; validates each against docs/schemas/<type>.schema.json.
    static let validator = """
    import json, sys
    from jsonschema import Draft202012Validator
    d = sys.argv[1]
    msgs = json.load(sys.stdin)
    bad = 0
    for m in msgs:
        s = json.load(open(f"{d}/{m['type']}.schema.json"))
        Draft202012Validator.check_schema(s)
        for e in Draft202012Validator(s).iter_errors(m):
            bad += 1
            print(f"{m['type']}: {e.message}")
        for ex in s.get("examples", []):
            Draft202012Validator(s).validate(ex)
    print(f"{len(msgs)} valid" if bad == 0 else f"{bad} errors")
    sys.exit(1 if bad else 0)
    """

    func testMessagesRoundTrip() throws {
        for m in ControlProtocolTests.goldenToWorker() {
            XCTAssertEqual(try ControlFrame.decode(ToWorker.self, from: try ControlFrame.encode(m)), m)
        }
        for m in ControlProtocolTests.goldenFromWorker() {
            let again = try ControlFrame.decode(FromWorker.self, from: try ControlFrame.encode(m))
            XCTAssertEqual(NSDictionary(dictionary: try ControlProtocolTests.json(again)), NSDictionary(dictionary: try ControlProtocolTests.json(m)))
        }
        XCTAssertThrowsError(try ControlFrame.decode(ToWorker.self, from: try ControlFrame.encode(FromWorker.ready(rank: 1)))) {
            XCTAssertTrue("\($0)".contains("not a message to a worker"), "\($0)")
        }
        XCTAssertThrowsError(try ControlFrame.decode(FromWorker.self, from: Message(bytes: Frame.magic + [2, 0, 16, 0] + Array(#"{"type":"step_done","rank":1}"#.utf8)))) {
            XCTAssertTrue("\($0)".contains("variant: missing"), "\($0)")
        }
    }

    func testGoldenControlFramesMatchTheDocument() throws {
        let dumps = try hexdumps()
        XCTAssertEqual(try ControlFrame.encode(FromWorker.heartbeat(rank: 1)).array, dumps["control-heartbeat"])
        XCTAssertEqual(try ControlFrame.encode(FromWorker.hello(rank: 0, pid: 4242, host: "node1", versions: [2])).array, dumps["control-hello"])
    }

    /// The run message carries the topology under the topology file's own keys and nesting.
    func testTopologyTravelsUnderTheYAMLKeys() throws {
        let (t, _) = try Topology.parse(yaml: Topology.embeddedDefaultYAML, source: "default.yaml")
        let j = try ControlProtocolTests.json(ToWorker.run(RunSpec(topology: t, variant: 0)))
        let topo = try XCTUnwrap(j["topology"] as? [String: Any])
        XCTAssertEqual(Set(topo.keys), ["name", "mode", "seed", "steps", "lr", "model", "residual", "cache", "pipeline", "transport", "source"])
        XCTAssertEqual(topo["model"] as? [String: Int], ["layers": 32, "hidden": 64, "heads": 4, "seq": 32, "vocab": 256])
        XCTAssertEqual(topo["residual"] as? NSDictionary, ["kind": "block", "blocks": 8])
        XCTAssertEqual(topo["pipeline"] as? NSDictionary, ["ranks": 4, "virtual": 2, "schedule": "interleaved-1f1b", "microbatches": 8, "microbatch_size": 2])
        XCTAssertEqual(topo["transport"] as? NSDictionary, ["kind": "ipc", "ranks": [Any]()])
        XCTAssertEqual(Set(j.keys), ["type", "variant", "topology", "first_step", "trace"])
        guard case .run(let spec) = try ControlFrame.decode(ToWorker.self, from: try ControlFrame.encode(ToWorker.run(RunSpec(topology: t, variant: 0)))) else {
            return XCTFail("not a run")
        }
        XCTAssertEqual(spec.topology, t)
    }

    // MARK: the coordinator's admission rule

    func testCoordinatorAdmitsARankOnlyFromItsPeer() {
        var a = ControlAdmission(ranks: 4)
        let peer1 = ControlAdmission.controlPeer(1), rogue = Array("rogue".utf8)
        XCTAssertEqual(a.join(rank: 1, versions: [2], from: peer1), .success(2))
        XCTAssertEqual(a.join(rank: 1, versions: [2], from: peer1), .failure(JoinRefusal("rank 1 has already joined")))
        XCTAssertEqual(a.join(rank: 9, versions: [2], from: rogue), .failure(JoinRefusal("rank 9 is not in 0…3")))
        guard case .failure(let r) = a.join(rank: 2, versions: [1], from: ControlAdmission.controlPeer(2)) else { return XCTFail() }
        XCTAssertTrue(r.reason.contains("the worker speaks 1, this coordinator speaks 2"), r.reason)
        guard case .failure(let id) = a.join(rank: 2, versions: [2], from: rogue) else { return XCTFail() }
        XCTAssertTrue(id.reason.contains("routing id 'rank-2', not 'rogue'"), id.reason)
        XCTAssertEqual(a.join(rank: 2, versions: [3, 2], from: ControlAdmission.controlPeer(2)), .success(2), "the highest common version")

        a.begin(.init(variant: 0, steps: 2, hops: 7))
        if case .drop(let why) = a.admit(.stepDone(rank: 99, variant: 0, step: 0, loss: nil), from: rogue) {
            XCTAssertTrue(why.contains("rank 99, not in 0…3"), why)
        } else { XCTFail("rank 99 must be dropped") }
        if case .drop = a.admit(.stepDone(rank: 1, variant: 0, step: 0, loss: nil), from: rogue) {} else { XCTFail("wrong peer must be dropped") }
        if case .drop = a.admit(.stepDone(rank: 3, variant: 0, step: 0, loss: nil), from: ControlAdmission.controlPeer(3)) {} else {
            XCTFail("rank 3 has not joined")
        }
        XCTAssertEqual(a.admit(.heartbeat(rank: 3), from: ControlAdmission.heartbeatPeer(3)), .accept, "heartbeats may precede the hello")
        if case .drop = a.admit(.heartbeat(rank: 3), from: rogue) {} else { XCTFail("a heartbeat from another peer is dropped") }
        XCTAssertEqual(a.admit(.stepDone(rank: 1, variant: 0, step: 0, loss: nil), from: peer1), .accept)
        XCTAssertEqual(a.admit(.stepDone(rank: 1, variant: 0, step: 0, loss: nil), from: peer1),
                       .violation(field: "step", problem: "0, but the next step of rank 1 is 1 of 0…1"))
        XCTAssertEqual(a.admit(.stepDone(rank: 1, variant: 1, step: 1, loss: nil), from: peer1),
                       .violation(field: "variant", problem: "1, but the variant being run is 0"))
        let early = report(rank: 1, variant: 0)
        XCTAssertEqual(a.admit(.report(early), from: peer1), .violation(field: "type", problem: "report after 1 of 2 steps"))
        XCTAssertEqual(a.admit(.stepDone(rank: 1, variant: 0, step: 1, loss: nil), from: peer1), .accept)
        XCTAssertEqual(a.admit(.stepDone(rank: 1, variant: 0, step: 2, loss: nil), from: peer1),
                       .violation(field: "step", problem: "2, but the next step of rank 1 is 2 of 0…1"))
        var badLink = early
        badLink.received[0].src = 12
        if case .violation(let f, _) = a.admit(.report(badLink), from: peer1) { XCTAssertEqual(f, "received[0]") } else { XCTFail() }
        var negative = early
        negative.headerBytesSent = -1
        if case .violation(let f, _) = a.admit(.report(negative), from: peer1) { XCTAssertEqual(f, "header_bytes_sent") } else { XCTFail() }
        var noSuchHop = early
        noSuchHop.tensorsPerHop = [7: 1]
        if case .violation(let f, let p) = a.admit(.report(noSuchHop), from: peer1) {
            XCTAssertEqual(f, "tensors_per_hop"); XCTAssertTrue(p.contains("hops 0…6"), p)
        } else { XCTFail() }
        // A trace record's model and depth times: within the span, depth within model, finite, on compute records only.
        func traced(_ r: TraceRecord) -> WorkerReport { var x = early; x.trace = [TraceRecord(kind: .send, start: 0, end: 0, step: 0, chunk: -1, microbatch: 0), r]; return x }
        let span = (start: 1.0, end: 1.002)
        for (record, field, words) in [
            (TraceRecord(kind: .forward, start: span.start, end: span.end, step: 0, chunk: 1, microbatch: 0, modelSeconds: 0.003), "trace[1].model_seconds", "longer than its span"),
            (TraceRecord(kind: .backward, start: span.start, end: span.end, step: 0, chunk: 1, microbatch: 0, modelSeconds: 0.001, depthSeconds: 0.0015),
             "trace[1].depth_seconds", "longer than model_seconds"),
            (TraceRecord(kind: .forward, start: span.start, end: span.end, step: 0, chunk: 1, microbatch: 0, depthSeconds: -0.001), "trace[1].depth_seconds", "not a finite number"),
            (TraceRecord(kind: .forward, start: span.start, end: span.end, step: 0, chunk: 1, microbatch: 0, modelSeconds: .infinity), "trace[1].model_seconds", "not a finite number"),
            (TraceRecord(kind: .optimizer, start: span.start, end: span.end, step: 0, chunk: -1, microbatch: -1, modelSeconds: 0.001), "trace[1].model_seconds", "forward and backward only"),
        ] {
            if case .violation(let f, let p) = a.admit(.report(traced(record)), from: peer1) {
                XCTAssertEqual(f, field); XCTAssertTrue(p.contains(words), p)
            } else { XCTFail("\(field): \(words)") }
        }
        XCTAssertNil(traced(TraceRecord(kind: .forward, start: span.start, end: span.end, step: 0, chunk: 1, microbatch: 0,
                                        modelSeconds: 0.0015, depthSeconds: 0.0004)).violation(rank: 1, variant: 0, ranks: 4, hops: 7))
        XCTAssertEqual(a.admit(.report(early), from: peer1), .accept)
        XCTAssertEqual(a.admit(.report(early), from: peer1), .violation(field: "type", problem: "a second report for variant 0"))
        for r in 10...13 {
            if case .drop = a.admit(.report(report(rank: r, variant: 0)), from: rogue) {} else { XCTFail("fake report for rank \(r)") }
        }
        XCTAssertEqual(a.admit(.bound(rank: 1, endpoint: "x"), from: peer1), .accept)
        XCTAssertEqual(a.admit(.bound(rank: 1, endpoint: "x"), from: peer1), .violation(field: "type", problem: "a second bound message"))
    }

    func report(rank: Int, variant: Int) -> WorkerReport {
        WorkerReport(rank: rank, received: [LinkCount(src: 0, dst: rank, direction: .forward, kind: .block, payloadBytes: 1, tensors: 1)], sent: [],
                     headerBytesSent: 0, messagesSent: 0, peakCachedBytes: 0, tensorsPerHop: [1: 1], computeSeconds: 0, waitSeconds: 0, variant: variant)
    }

    // MARK: the worker's acceptance rule

    /// Every receive the schedule has is admitted once, in any order within the two-step window; nothing else is.
    func testReceivePlanAdmitsExactlyTheScheduledReceives() throws {
        for (schedule, virtual) in [(ScheduleKind.interleaved1F1B, 2), (.oneFOneB, 1), (.gpipe, 1)] {
            var t = Topology()
            t.schedule = schedule; t.virtualStages = virtual; t.steps = 3
            for rank in 0..<t.ranks {
                var plan = try ReceivePlan(rank: rank, variant: 5, topology: t)
                let actions = try Schedule(kind: t.schedule, layout: t.layout, microbatches: t.microbatches).actions[rank]
                let receives = actions.filter { if case .recvForward = $0 { return true }; if case .recvBackward = $0 { return true }; return false }
                XCTAssertEqual(plan.sources.count, receives.count)
                XCTAssertEqual(plan.capacity, 2 * receives.count)
                func key(_ s: ReceivePlan.Slot, step: Int) -> DataKey { DataKey(variant: 5, step: step, kind: s.kind, hop: s.hop, microbatch: s.microbatch) }
                let slots = plan.sources.keys.sorted { ($0.hop, $0.microbatch, $0.kind.rawValue) < ($1.hop, $1.microbatch, $1.kind.rawValue) }
                // Step 1 arrives (reversed) before step 0 has finished arriving: within the window.
                for s in slots.reversed() { XCTAssertNil(plan.admit(key(s, step: 1), source: plan.sources[s]!)) }
                let first = slots[0]
                XCTAssertNotNil(plan.admit(key(first, step: 2), source: plan.sources[first]!), "two steps ahead")
                for s in slots { XCTAssertNil(plan.admit(key(s, step: 0), source: plan.sources[s]!), "\(schedule) rank \(rank) \(s)") }
                XCTAssertEqual(plan.openStep, 2)
                XCTAssertEqual(plan.admit(key(first, step: 1), source: plan.sources[first]!), "every message of step 1 has already arrived")
                XCTAssertNil(plan.admit(key(first, step: 2), source: plan.sources[first]!))
                XCTAssertEqual(plan.admit(key(first, step: 2), source: plan.sources[first]!), "it has already arrived (a duplicate)")
                XCTAssertEqual(plan.admit(key(first, step: 3), source: plan.sources[first]!), "the variant has steps 0…2")
                XCTAssertEqual(plan.admit(DataKey(variant: 4, step: 2, kind: first.kind, hop: first.hop, microbatch: first.microbatch),
                                          source: plan.sources[first]!), "the variant being run is 5")
                let other = slots[1]
                XCTAssertEqual(plan.admit(key(other, step: 2), source: t.ranks + 1), "that hop's messages come from rank \(plan.sources[other]!)")
                let unscheduled = DataKey(variant: 5, step: 2, kind: .forward, hop: 40, microbatch: 0)
                XCTAssertNotNil(plan.admit(unscheduled, source: 0))
            }
        }
    }

    func hexdumps() throws -> [String: [UInt8]] {
        let text = try String(contentsOf: packageRoot.appendingPathComponent("docs/protocol.md"), encoding: .utf8)
        var out: [String: [UInt8]] = [:]
        var name: String?
        var bytes: [UInt8] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```hexdump ") { name = String(line.dropFirst(11)); bytes = []; continue }
            if line.hasPrefix("```"), let n = name { out[n] = bytes; name = nil; continue }
            if name != nil { for h in line.split(separator: " ").dropFirst() { bytes.append(UInt8(h, radix: 16)!) } }
        }
        return out
    }
}

/// python3 with `jsonschema` for the schema tests (the Makefile's deps target installs it; pip as a fallback).
enum Python {
    static func ensureJSONSchema() throws {
        if (try? shell(["python3", "-c", "import jsonschema"]))?.status == 0 { return }
        guard (try? shell(["python3", "-c", "pass"]))?.status == 0 else { throw XCTSkip("python3 is not installed: cannot validate the JSON Schemas") }
        for extra in [[], ["--break-system-packages"]] {
            _ = try? shell(["python3", "-m", "pip", "install", "-q", "--timeout", "30", "jsonschema"] + extra)
            if (try? shell(["python3", "-c", "import jsonschema"]))?.status == 0 { return }
        }
        throw XCTSkip("python3's jsonschema is missing and pip could not install it (run make deps)")
    }

    /// Runs `script` with `input` on stdin; fails the test unless the exit status is as expected. Returns stdout.
    static func run(_ script: String, args: [String], input: Data, expectFailure: Bool = false,
                    file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try ensureJSONSchema()
        let r = try shell(["python3", "-c", script] + args, input: input)
        if (r.status == 0) == expectFailure { XCTFail("python3 exited \(r.status):\n\(r.stdout)\n\(r.stderr)", file: file, line: line) }
        return r.stdout
    }

    static func shell(_ arguments: [String], input: Data = Data()) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["timeout", "--kill-after=10", "120"] + arguments
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out; p.standardError = err; p.standardInput = inp
        try p.run()
        final class Box: @unchecked Sendable { var data = Data() }
        let e = Box(), o = Box()
        let group = DispatchGroup()
        group.enter(); Thread { e.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }.start()
        group.enter(); Thread { o.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }.start()
        inp.fileHandleForWriting.write(input)
        try inp.fileHandleForWriting.close()
        group.wait()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o.data, as: UTF8.self), String(decoding: e.data, as: UTF8.self))
    }
}

import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// scripts/hosts.sh and its test helper: IDs keep concurrent users apart, addresses exist only inside the
/// namespaces, and `down` leaves no process, namespace or interface behind.
final class TestHostsTests: XCTestCase {
    /// Names of the network namespaces that exist now.
    func namespaces() throws -> Set<String> {
        let r = try CLIProcess.run(["netns", "list"], executable: TestHosts.ipTool, timeout: 30)
        return Set(r.stdout.split(separator: "\n").compactMap { $0.split(separator: " ").first.map(String.init) })
    }

    func testDownKillsWhatRunsInsideAndRemovesEverything() throws {
        let hosts = try TestHosts(2, for: self)
        let sleeper = try hosts.start(1, ["600"], executable: "sleep")
        // `ip netns exec` execs the command: the pid we hold is the one inside the namespace.
        let seen = Watchdog.run("the sleeper showing up in host 1", seconds: 30) { () -> [String: [String]] in
            var left = hosts.processesLeft()
            while left[hosts.hosts[1].namespace] == nil && sleeper.exitedAt == nil { usleep(20_000); left = hosts.processesLeft() }
            return left
        }
        XCTAssertEqual(seen?.keys.sorted(), [hosts.hosts[1].namespace])
        XCTAssertTrue(seen?[hosts.hosts[1].namespace]?.first?.hasPrefix("\(sleeper.pid) sleep 600") ?? false, "\(seen ?? [:])")
        hosts.down()
        XCTAssertNotNil(sleeper.wait(seconds: 30), "down did not stop the process inside host 1")
        XCTAssertTrue(try namespaces().isDisjoint(with: hosts.hosts.map(\.namespace)), "namespaces left after down")
        let links = try CLIProcess.run(["-o", "link", "show"], executable: TestHosts.ipTool, timeout: 30).stdout
        XCTAssertFalse(links.contains("ah\(hosts.id)br") || links.contains("ah\(hosts.id)v"), links)
        // Idempotent: a second down (the teardown's) finds nothing and succeeds.
        let again = try CLIProcess.run(["down"], executable: TestHosts.script, timeout: 60, environment: ["ATTNRES_HOSTS_ID": "\(hosts.id)"])
        XCTAssertEqual(again.status, 0, again.stderr)
    }

    func testConcurrentUsersGetTheirOwnIDsAndAHeldIDIsRefused() throws {
        let a = try TestHosts(1, for: self), b = try TestHosts(1, for: self)
        XCTAssertNotEqual(a.id, b.id)
        XCTAssertNotEqual(a.hosts[0].address, b.hosts[0].address)
        XCTAssertEqual(a.hosts[0].address, "10.232.\(a.id).1")
        let taken = try CLIProcess.run(["up", "1"], executable: TestHosts.script, timeout: 60, environment: ["ATTNRES_HOSTS_ID": "\(a.id)"])
        XCTAssertEqual(taken.status, 3)
        XCTAssertTrue(taken.stderr.contains("hosts ID \(a.id) in use (bridge ah\(a.id)br exists)"), taken.stderr)
        // The refused `up` tore nothing of the holder's down.
        XCTAssertTrue(try namespaces().contains(a.hosts[0].namespace))
        // Addresses exist only inside the namespaces: the machine's own namespace has none of the subnet.
        let root = try CLIProcess.run(["-4", "-o", "addr", "show"], executable: TestHosts.ipTool, timeout: 30).stdout
        XCTAssertFalse(root.contains("10.232.\(a.id)."), root)
        let inside = try a.run(0, ["-4", "-o", "addr", "show", "dev", "eth0"], executable: "ip", timeout: 30).stdout
        XCTAssertTrue(inside.contains("10.232.\(a.id).1/24"), inside)
    }

    /// Hosts whose owner died (a SIGKILLed test process) are removed by the next sweep; a live owner's are kept.
    func testSweepRemovesTheHostsOfADeadOwnerOnly() throws {
        let mine = try TestHosts(1, for: self)
        let owner = Process()
        owner.executableURL = URL(fileURLWithPath: "/bin/sleep")
        owner.arguments = ["600"]
        try owner.run()
        defer { if owner.isRunning { kill(owner.processIdentifier, SIGKILL) } }
        // An ID next to none of TestHosts' (100…250), with its owner recorded, brought up by hand.
        let id = "\(2 + Int(getpid()) % 90)"
        let env = ["ATTNRES_HOSTS_ID": id, "ATTNRES_HOSTS_OWNER": "\(owner.processIdentifier)"]
        addTeardownBlock { _ = try? CLIProcess.run(["down"], executable: TestHosts.script, timeout: 60, environment: ["ATTNRES_HOSTS_ID": id]) }
        let up = try CLIProcess.run(["up", "1"], executable: TestHosts.script, timeout: 60, environment: env)
        guard up.status == 0 else { return XCTFail("hosts.sh up 1 with ID \(id): \(up.stderr)") }
        let sweep = { try CLIProcess.run(["sweep"], executable: TestHosts.script, timeout: 60) }
        XCTAssertEqual(try sweep().status, 0)
        XCTAssertTrue(try namespaces().isSuperset(of: ["ah\(id)h0", mine.hosts[0].namespace]), "a sweep removed hosts whose owner lives")
        kill(owner.processIdentifier, SIGKILL)
        Watchdog.waitForExit(owner, "sleep 600 after SIGKILL", seconds: 30)
        let swept = try sweep()
        XCTAssertTrue(swept.stderr.contains("hosts ID \(id): owner \(owner.processIdentifier) is gone"), swept.stderr)
        let left = try namespaces()
        XCTAssertFalse(left.contains("ah\(id)h0"), "the dead owner's hosts are still there")
        XCTAssertTrue(left.contains(mine.hosts[0].namespace), "the live owner's hosts were swept")
    }

    func testBadArgumentsAreClearErrors() throws {
        for (args, id, message) in [(["up", "0"], "7", "N '0' is not a host count in 1…250"),
                                    (["up", "x"], "7", "N 'x' is not a host count"),
                                    (["up", "2", "fast"], "7", "MBIT 'fast' is not a positive integer"),
                                    (["up", "2"], "251", "ATTNRES_HOSTS_ID '251' is not an integer in 1…250"),
                                    (["sideways"], "7", "usage:")] {
            let r = try CLIProcess.run(args, executable: TestHosts.script, timeout: 60, environment: ["ATTNRES_HOSTS_ID": id])
            XCTAssertEqual(r.status, 2, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }
}

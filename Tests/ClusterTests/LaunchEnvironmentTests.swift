import XCTest
@testable import Cluster
import Wire

/// How a worker resolves its rank, world size and endpoint from flags and a launcher's environment
/// (`LaunchEnvironment`), and how the coordinator's admission answers a launch of the wrong size.
final class LaunchEnvironmentTests: XCTestCase {
    let endpoint = "tcp://10.0.0.1:5555"

    func resolve(rank: Int? = nil, join: String? = nil, launcher: String? = nil, _ env: [String: String]) throws -> LaunchEnvironment {
        try LaunchEnvironment.resolve(rank: rank, join: join, launcher: launcher, environment: env)
    }

    func error(rank: Int? = nil, join: String? = nil, launcher: String? = nil, _ env: [String: String],
               file: StaticString = #filePath, line: UInt = #line) -> LaunchError? {
        do {
            let r = try resolve(rank: rank, join: join, launcher: launcher, env)
            XCTFail("resolved to \(r), expected an error", file: file, line: line)
            return nil
        } catch let e as LaunchError { return e } catch {
            XCTFail("\(error)", file: file, line: line)
            return nil
        }
    }

    func testEachLauncherGivesRankAndWorldSize() throws {
        for l in LaunchEnvironment.launchers {
            let r = try resolve([l.rankVariable: "2", l.sizeVariable: "4", "ATTNRES_COORDINATOR": endpoint])
            XCTAssertEqual(r.rank, 2, l.name)
            XCTAssertEqual(r.worldSize, .init(size: 4, variable: l.sizeVariable), l.name)
            XCTAssertEqual(r.rankSource, "\(l.rankVariable)=2")
            XCTAssertEqual(r.endpoint, endpoint)
            XCTAssertEqual(r.endpointSource, "ATTNRES_COORDINATOR")
        }
        // A rank without a size: nothing for the coordinator to check.
        XCTAssertNil(try resolve(["PMI_RANK": "1", "ATTNRES_COORDINATOR": endpoint]).worldSize)
    }

    /// `--rank` and `--join` win over the environment; with `--rank` no launcher size is carried (a worker
    /// started by hand inside an allocation must not be refused for the allocation's task count).
    func testFlagsWin() throws {
        let r = try resolve(rank: 3, join: "tcp://h:1", ["SLURM_PROCID": "0", "SLURM_NTASKS": "1", "ATTNRES_COORDINATOR": endpoint])
        XCTAssertEqual(r.rank, 3)
        XCTAssertEqual(r.rankSource, "--rank")
        XCTAssertNil(r.worldSize)
        XCTAssertEqual(r.endpoint, "tcp://h:1")
        XCTAssertEqual(r.endpointSource, "--join")
    }

    func testAgreeingLaunchersAreOneRank() throws {
        // srun --mpi=pmi2 sets SLURM_* and PMI_* for the same task.
        let r = try resolve(["SLURM_PROCID": "1", "SLURM_NTASKS": "4", "PMI_RANK": "1", "PMI_SIZE": "4", "ATTNRES_COORDINATOR": endpoint])
        XCTAssertEqual(r.rank, 1)
        XCTAssertEqual(r.worldSize, .init(size: 4, variable: "SLURM_NTASKS"))
    }

    /// mpirun inside an sbatch script: the batch step's SLURM_PROCID=0 beside OpenMPI's own rank.
    func testDisagreeingLaunchersNameBothVariables() throws {
        let env = ["SLURM_PROCID": "0", "SLURM_NTASKS": "1", "OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4",
                   "ATTNRES_COORDINATOR": endpoint]
        let e = try XCTUnwrap(error(env))
        XCTAssertEqual(e, .disagree(what: "rank", "SLURM_PROCID", "0", "OMPI_COMM_WORLD_RANK", "3"))
        XCTAssertTrue("\(e)".contains("SLURM_PROCID=0 but OMPI_COMM_WORLD_RANK=3"), "\(e)")
        XCTAssertTrue("\(e)".contains("--launcher"), "\(e)")
        // Rank 0 agrees, the sizes do not.
        var rank0 = env
        rank0["OMPI_COMM_WORLD_RANK"] = "0"
        XCTAssertEqual(error(rank0), .disagree(what: "world size", "SLURM_NTASKS", "1", "OMPI_COMM_WORLD_SIZE", "4"))
        // --launcher settles it.
        let r = try resolve(launcher: "openmpi", env)
        XCTAssertEqual(r.rank, 3)
        XCTAssertEqual(r.worldSize, .init(size: 4, variable: "OMPI_COMM_WORLD_SIZE"))
        // An empty variable is unset.
        var hidden = env
        hidden["SLURM_PROCID"] = ""
        hidden["SLURM_NTASKS"] = ""
        XCTAssertEqual(try resolve(hidden).rank, 3)
    }

    func testMissingRankOrEndpointListsWhatWasTried() throws {
        let noRank = try XCTUnwrap(error(["ATTNRES_COORDINATOR": endpoint, "WORLD_SIZE": "4"]))
        for v in ["--rank", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "RANK"] {
            XCTAssertTrue("\(noRank)".contains(v), "\(noRank)")
        }
        let onlyOne = try XCTUnwrap(error(launcher: "slurm", ["ATTNRES_COORDINATOR": endpoint, "RANK": "1"]))
        XCTAssertEqual(onlyOne, .noRank(tried: ["SLURM_PROCID"], launcher: "slurm"))
        let noEndpoint = try XCTUnwrap(error(rank: 0, [:]))
        XCTAssertEqual(noEndpoint, .noEndpoint)
        XCTAssertTrue("\(noEndpoint)".contains("--join") && "\(noEndpoint)".contains("ATTNRES_COORDINATOR"), "\(noEndpoint)")
    }

    func testBadValuesNameTheVariable() throws {
        XCTAssertEqual(error(["SLURM_PROCID": "one", "ATTNRES_COORDINATOR": endpoint]),
                       .badNumber(source: "SLURM_PROCID", value: "one", what: "rank"))
        XCTAssertEqual(error(["RANK": "-1", "ATTNRES_COORDINATOR": endpoint]), .badNumber(source: "RANK", value: "-1", what: "rank"))
        XCTAssertEqual(error(["RANK": "1", "WORLD_SIZE": "0", "ATTNRES_COORDINATOR": endpoint]),
                       .badNumber(source: "WORLD_SIZE", value: "0", what: "world size"))
        XCTAssertEqual(error(["PMI_RANK": "4", "PMI_SIZE": "4", "ATTNRES_COORDINATOR": endpoint]),
                       .rankOutsideWorld(rank: 4, rankVariable: "PMI_RANK", .init(size: 4, variable: "PMI_SIZE")))
        XCTAssertEqual(error(rank: 0, ["ATTNRES_COORDINATOR": "10.0.0.1:5555"]),
                       .badEndpoint(source: "ATTNRES_COORDINATOR", value: "10.0.0.1:5555",
                                    problem: "must be tcp://HOST:PORT (PORT in 1…65535 or *) or ipc://PATH"))
        XCTAssertEqual(error(launcher: "lsf", ["ATTNRES_COORDINATOR": endpoint]), .unknownLauncher("lsf", known: ["slurm", "openmpi", "pmi", "torchrun"]))
    }

    /// The coordinator refuses a launch of another size, naming rank, size, variable and the topology's ranks,
    /// before the rank range (rank 4 of a 5-task launch on 4 ranks is explained by the size).
    func testAdmissionRefusesAWorldSizeOtherThanTheTopologys() {
        var a = ControlAdmission(ranks: 4)
        let five = LaunchEnvironment.WorldSize(size: 5, variable: "OMPI_COMM_WORLD_SIZE")
        guard case .failure(let refusal) = a.join(rank: 2, versions: [2], worldSize: five, from: ControlAdmission.controlPeer(2)) else {
            return XCTFail("a 5-task launch joined a 4-rank topology")
        }
        XCTAssertEqual(refusal.reason, "rank 2 was started by a launcher with world size 5 (OMPI_COMM_WORLD_SIZE=5), "
                       + "but the topology has 4 ranks (pipeline.ranks): start exactly 4 workers")
        XCTAssertEqual(a.worldSizeRefusals.keys.sorted(), [2])
        guard case .failure(let outside) = a.join(rank: 4, versions: [2], worldSize: five, from: ControlAdmission.controlPeer(4)) else {
            return XCTFail("rank 4 joined")
        }
        XCTAssertTrue(outside.reason.contains("world size 5"), outside.reason)
        // A stranger's hello for rank 1 is refused too, but does not mark rank 1's launch as wrong.
        guard case .failure = a.join(rank: 1, versions: [2], worldSize: five, from: Array("rogue".utf8)) else { return XCTFail("a stranger joined") }
        XCTAssertEqual(a.worldSizeRefusals.keys.sorted(), [2])
        // The same worker with the right size (or none) joins, and its earlier refusal is forgotten.
        XCTAssertEqual(a.join(rank: 2, versions: [2], worldSize: .init(size: 4, variable: "SLURM_NTASKS"), from: ControlAdmission.controlPeer(2)),
                       .success(2))
        XCTAssertEqual(a.worldSizeRefusals.keys.sorted(), [])
        XCTAssertEqual(a.join(rank: 1, versions: [2], from: ControlAdmission.controlPeer(1)), .success(2))
    }

    /// The hello's optional fields travel as docs/protocol.md says, together or not at all.
    func testHelloCarriesTheWorldSize() throws {
        let hello = FromWorker.hello(rank: 1, pid: 9, host: "h", versions: [2], worldSize: .init(size: 4, variable: "SLURM_NTASKS"))
        let body = String(decoding: ControlFrame.body(of: try ControlFrame.encode(hello)), as: UTF8.self)
        XCTAssertEqual(body, #"{"host":"h","pid":9,"rank":1,"type":"hello","versions":[2],"world_size":4,"world_size_variable":"SLURM_NTASKS"}"#)
        guard case .hello(_, _, _, _, let w) = try ControlFrame.decode(FromWorker.self, from: try ControlFrame.encode(hello)) else { return XCTFail() }
        XCTAssertEqual(w, .init(size: 4, variable: "SLURM_NTASKS"))
        let plain = String(decoding: ControlFrame.body(of: try ControlFrame.encode(FromWorker.hello(rank: 1, pid: 9, host: "h", versions: [2]))), as: UTF8.self)
        XCTAssertFalse(plain.contains("world_size"), plain)
        let half = Message(bytes: Frame.magic + [2, 0, 16, 0] + Array(#"{"type":"hello","rank":1,"pid":9,"host":"h","versions":[2],"world_size":4}"#.utf8))
        XCTAssertThrowsError(try ControlFrame.decode(FromWorker.self, from: half))
    }
}

import Cluster
import Foundation

/// One line on standard error as the whole cluster finishes a step, for `attnres coordinator`: a coordinator on
/// another host runs headless (no terminal for `Progress`), and its log is where a user, or a test waiting for
/// the run to be under way, sees that steps complete. The first and last steps are always logged, the ones
/// between at most every `interval` seconds, so a long run's log stays short.
struct StepLog {
    var interval = 5.0
    private var lastLogged = -Double.infinity

    /// `onStep` for `Coordinator.run` of the variant `t` (step numbers from 1).
    mutating func log(step: Int, of t: Topology) {
        let now = monotonicSeconds()
        guard step == 1 || step == t.steps || now - lastLogged >= interval else { return }
        lastLogged = now
        FileHandle.standardError.write("coordinator: step \(step)/\(t.steps) done on every rank (\(t.residual.rawValue)/\(t.cache.rawValue))\n".data(using: .utf8)!)
    }
}

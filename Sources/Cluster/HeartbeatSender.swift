import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Wire

/// Sends a worker's heartbeat every 250 ms from its own thread and its own socket, so that a long chunk
/// computation never looks like a frozen worker to the coordinator (a SIGSTOPped process stops this thread too,
/// so freezes are still seen). For a locally started worker it also ends the process at once when the parent
/// coordinator is gone, even in the middle of a computation.
final class HeartbeatSender: @unchecked Sendable {
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var stopped = false

    /// `configure` sets the socket up before it connects (CURVE keys), as the control socket is.
    init(context: ZContext, endpoint: String, rank: Int, parent: pid_t?, configure: @escaping @Sendable (Socket) throws -> Void = { _ in }) {
        Thread { [self] in
            defer { finished.signal() }
            guard let socket = try? Socket(context, .dealer) else { return }
            defer { socket.close() }
            try? socket.setIdentity("rank-\(rank)-heartbeat")
            try? configure(socket)
            try? socket.connect(endpoint)
            while !isStopped {
                if let parent, getppid() != parent {
                    fputs("[rank \(rank)] coordinator (parent \(parent)) exited; exiting\n", stderr)
                    _exit(3)
                }
                // Never blocks: with the coordinator gone a blocking send could wait forever, and `stop()` with it.
                if let beat = try? ControlFrame.encode(FromWorker.heartbeat(rank: rank)) { _ = try? socket.trySend(beat) }
                _ = wake.wait(timeout: .now() + 0.25)
            }
        }.start()
    }

    private var isStopped: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopped
    }

    /// Stops the thread and waits until its socket is closed (the context cannot terminate before that).
    func stop() {
        lock.lock(); stopped = true; lock.unlock()
        wake.signal()
        finished.wait()
    }
}

import Wire

/// A worker's CURVE side (docs/protocol.md, "Authentication"): the control handshake watched, the inbox a CURVE
/// server whose ZAP handler admits only the ranks that send to it, and every data message checked against the key
/// it arrived with.
extension Worker {
    /// The user id the inbox's ZAP handler gives rank `r`'s connections (and the coordinator's gives its control).
    static func curveUser(_ r: Int) -> String { "rank-\(r)" }

    /// Ends the worker when the coordinator refused its key (ZAP status 400) or the handshake failed (a CURVE key
    /// that is not the coordinator's, a plain worker facing a CURVE coordinator): libzmq reports neither to the
    /// application, which would otherwise wait for a welcome that never comes.
    func watchHandshakes() throws {
        guard let monitor = controlMonitor else { return }
        while let e = try monitor.next() {
            if e.isSuccess { continue }
            guard let keys else {
                if e.isProtocolFailure, !heardFromCoordinator {
                    throw WorkerError.notAdmitted(rank: rank, endpoint: joinEndpoint, why: "the handshake failed (libzmq error 0x\(String(e.value, radix: 16))): "
                                                  + "if the coordinator runs with security: {curve: …}, start this worker with --keys DIR")
                }
                continue
            }
            let secret = CurveKeys.secretFile(keys.directory, CurveKeys.rankName(rank))
            if e.isAuthenticationFailure {
                throw WorkerError.notAdmitted(rank: rank, endpoint: joinEndpoint,
                                              why: "its CURVE key was refused (ZAP status \(e.value)): \(secret) is not one of the rank keys the coordinator lists")
            }
            if e.isProtocolFailure, !heardFromCoordinator {
                throw WorkerError.notAdmitted(rank: rank, endpoint: joinEndpoint,
                                              why: "the CURVE handshake failed (libzmq error 0x\(String(e.value, radix: 16))): does the coordinator run with security: {curve: …}, "
                                                + "and is \(CurveKeys.publicFile(keys.directory, CurveKeys.coordinatorName)) its key?")
            }
        }
    }

    /// Makes the inbox a CURVE server admitting only the ranks that send to this one (r±1 mod P), each under its
    /// own user id. Plain links without `--keys`; a mismatch between `--keys` and the coordinator's setup is refused.
    func secureInbox(_ inbox: Socket, ranks: Int, curveKeys: [String]?) throws {
        guard let keys else {
            if curveKeys != nil {
                throw WorkerError.protocolViolation(rank: rank, "setup: curve_public_keys given, but this worker was started without --keys")
            }
            return
        }
        guard let curveKeys else {
            throw WorkerError.protocolViolation(rank: rank, "setup: no curve_public_keys, but this worker was started with --keys \(keys.directory): refusing plain data links")
        }
        guard curveKeys.count == ranks, curveKeys.allSatisfy({ CurveKeyPair.decode($0) != nil }) else {
            throw WorkerError.protocolViolation(rank: rank, "setup: curve_public_keys must list \(ranks) Z85 keys (40 characters each), one per rank")
        }
        guard curveKeys[rank] == keys.pair.publicKey else {
            throw WorkerError.protocolViolation(rank: rank, "setup: curve_public_keys[\(rank)] is not this worker's public key "
                                                + "\(CurveKeys.publicFile(keys.directory, CurveKeys.rankName(rank)))")
        }
        rankPublicKeys = curveKeys
        let senders = Set([(rank + 1) % ranks, (rank + ranks - 1) % ranks]).subtracting([rank])
        var admitted: [String: String] = [:]
        for s in senders { admitted[curveKeys[s]] = Worker.curveUser(s) }
        let me = rank
        dataZAP = try ZAPHandler(context: context, admitted: admitted) { refusal in
            printError("[rank \(me)] refused a data connection from \(refusal.address): CURVE key \(refusal.publicKey) is not a sender of this rank")
        }
        try inbox.makeCurveServer(secretKey: keys.pair.secretKey, domain: "attnres-data")
    }

    /// A data message must come over the connection authenticated as the rank its header names as source.
    func checkSender(_ frames: [Message], claimedSource: Int) throws {
        guard keys != nil else { return }
        let user = frames.first?.userId
        guard user == Worker.curveUser(claimedSource) else {
            throw WorkerError.protocolViolation(rank: rank, "rejected a data message claiming to come from rank \(claimedSource) over a link authenticated as "
                                                + "\(user.map { "'\($0)'" } ?? "nobody")")
        }
    }
}

import Logging
import Wire

/// The coordinator's CURVE side (docs/protocol.md, "Authentication"): its ROUTER is a CURVE server whose ZAP
/// handler admits only the ranks' public keys, each connection under the user id of its rank, and a message is
/// taken only when the rank its routing id names is the rank its key belongs to.
extension Coordinator {
    /// Makes `router` a CURVE server with the coordinator's secret key and starts its context's ZAP handler; a
    /// refused key is logged with the peer's address and kept for the report (`curveRefusals`).
    static func secure(_ router: Socket, keys: CoordinatorKeys, directory: String, context: ZContext, logger: Logger) throws -> ZAPHandler {
        var admitted: [String: String] = [:]
        for (r, key) in keys.rankPublicKeys.enumerated() { admitted[key] = Worker.curveUser(r) }
        let ranks = keys.rankPublicKeys.count
        let handler = try ZAPHandler(context: context, admitted: admitted) { refusal in
            logger.warning("coordinator: refused a CURVE connection from \(refusal.address): public key \(refusal.publicKey) is none of the \(ranks) rank keys in \(directory)")
        }
        do { try router.makeCurveServer(secretKey: keys.pair.secretKey, domain: "attnres-control") } catch {
            handler.stop()
            throw error
        }
        return handler
    }

    /// The distinct (address, key) pairs the ZAP handler refused (unknown CURVE keys); empty without CURVE.
    public var curveRefusals: [ZAPHandler.Refusal] { zap?.refusals ?? [] }

    /// The report's security section (nil without CURVE).
    public var securityReport: ReportJSON.Security? {
        curveKeys == nil ? nil : ReportJSON.Security(curve: true, refusedConnections: zap?.refusedAttempts ?? 0, refused: curveRefusals)
    }

    /// One line for the printed report (nil without CURVE).
    public var securityLine: String? {
        guard curveKeys != nil else { return nil }
        let r = curveRefusals, n = zap?.refusedAttempts ?? 0
        return "CURVE: control and data links authenticated and encrypted; \(n) connection\(n == 1 ? "" : "s") refused for an unknown key"
            + (r.isEmpty ? "" : " (from " + Set(r.map(\.address)).sorted().joined(separator: ", ") + ")")
    }

    /// Why a control message from `peer` (routing id `rank-R` or `rank-R-heartbeat`) over a connection whose key is
    /// `user` cannot be rank R's: nil when it can. `rank` is set for a control socket, whose hello is then refused.
    func curveMismatch(peer: [UInt8], user: String?) -> (rank: Int?, why: String)? {
        let id = String(decoding: peer, as: UTF8.self)
        let heartbeat = id.hasSuffix("-heartbeat")
        let stem = heartbeat ? String(id.dropLast("-heartbeat".count)) : id
        guard stem.hasPrefix("rank-"), let r = Int(stem.dropFirst("rank-".count)), (0..<base.ranks).contains(r) else { return nil }
        guard user != Worker.curveUser(r) else { return nil }
        let why = "a peer claiming rank \(r) must authenticate with rank \(r)'s CURVE key; this one has "
            + (user.map { "the key of \($0.replacingOccurrences(of: "-", with: " "))" } ?? "no admitted key")
        return (heartbeat ? nil : r, why)
    }
}

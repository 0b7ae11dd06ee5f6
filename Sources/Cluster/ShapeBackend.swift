import Model
import Pipeline
import Wire

/// Shape mode's backend: every tensor the real model would produce, of exactly its size, with no arithmetic.
/// Each buffer carries the tag of what it is (`ShapeTensors.tag`), and every tensor a chunk reads — from the wire
/// or from the rank's cache — and every gradient it is handed must carry the tag of the role it plays, so a wrong
/// block, a stale cache entry or a misrouted deposit is caught where it happens. Blocks pass through chunks as
/// the same libzmq buffers (shared, never copied).
struct ShapeBackend: ChunkBackend {
    typealias Value = Message

    let plan: HopPlan
    let activationBytes: Int
    /// 0-based step of the run (tags carry it, so a message of another step is caught).
    var step = 0

    /// A tensor whose tag does not name the role it plays.
    struct WrongTag: Error, CustomStringConvertible {
        let role: TensorRole, direction: Direction, microbatch: Int, hop: Int, got: Float?, expected: Float
        var description: String {
            "hop \(hop) \(direction.rawValue) microbatch \(microbatch): \(role) carries tag \(got.map { "\($0)" } ?? "none (first and last element differ)"), expected \(expected)"
        }
    }

    func tag(_ role: TensorRole, _ d: Direction, _ m: Int, hop: Int) -> Float {
        ShapeTensors.tag(role, direction: d, step: step, microbatch: m, hop: hop)
    }

    func make(_ role: TensorRole, _ d: Direction, _ m: Int, hop: Int) -> Message {
        ShapeTensors.make(bytes: activationBytes, tag: tag(role, d, m, hop: hop))
    }

    func check(_ values: HopValues<Message>, roles: [TensorRole], _ d: Direction, _ m: Int, hop: Int) throws {
        for role in roles {
            guard let v = values[role], v.count >= 4 else { continue }
            let want = tag(role, d, m, hop: hop), got = ShapeTensors.readTag(v)
            guard got == want else { throw WrongTag(role: role, direction: d, microbatch: m, hop: hop, got: got, expected: want) }
        }
    }

    mutating func forward(chunk c: Int, microbatch m: Int, input: HopValues<Message>?) throws -> HopValues<Message>? {
        if let input { try check(input, roles: plan.inputRoles(ofChunk: c), .forward, m, hop: c - 1) }
        guard c < plan.layout.chunks - 1 else { return nil }
        var out = HopValues<Message>(blocks: input?.blocks ?? [])
        for n in plan.producedBlocks(inChunk: c) { out.blocks.append(make(.block(n), .forward, m, hop: c)) }
        for role in plan.outputRoles(ofChunk: c) {
            switch role {
            case .hidden: out.hidden = make(role, .forward, m, hop: c)
            case .partial: out.partial = make(role, .forward, m, hop: c)
            case .block: break
            }
        }
        return out
    }

    mutating func backward(chunk c: Int, microbatch m: Int, gradOutput: HopValues<Message>?) throws -> HopValues<Message>? {
        if let gradOutput { try check(gradOutput, roles: plan.outputRoles(ofChunk: c), .backward, m, hop: c) }
        guard c > 0 else { return nil }
        let roles = plan.inputRoles(ofChunk: c)
        return HopValues(roles: roles, values: roles.map { make($0, .backward, m, hop: c - 1) })
    }

    func zeroGradient(_ role: TensorRole, microbatch m: Int, hop: Int) -> Message { make(role, .backward, m, hop: hop) }

    /// No arithmetic; both gradients must be of the same tensor.
    func accumulate(_ sum: inout Message, _ contribution: Message, role: TensorRole, microbatch m: Int) throws {
        let want = tag(role, .backward, m, hop: 0), got = ShapeTensors.readTag(contribution)
        guard ShapeTensors.readTag(sum) == want, got == want else {
            throw WrongTag(role: role, direction: .backward, microbatch: m, hop: -1, got: got, expected: want)
        }
    }

    func byteCount(_ value: Message) -> Int { value.count }
}

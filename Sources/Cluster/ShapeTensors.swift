#if canImport(Glibc)
import Glibc
#endif
import Pipeline
import Wire

/// Shape mode's tensors: exactly the size of the real ones, filled with a tag that identifies what they are,
/// so receivers can check that the right block arrived (the tag survives caching and forwarding).
enum ShapeTensors {
    /// A float that names (direction, step, microbatch, tensor); exact in float32 (< 2^24).
    static func tag(_ role: TensorRole, direction: Direction, step: Int, microbatch: Int, hop: Int) -> Float {
        let code: Int
        switch role {
        case .block(let n): code = n % 256
        case .partial(let n, let i): code = 256 + (n &* 7 &+ i) % 256
        case .hidden: code = 512 + hop % 256
        }
        let v = Float((step % 16) << 19 + (microbatch % 512) << 10 + code)
        return direction == .forward ? v + 1 : -(v + 1)
    }

    /// A new tensor of `bytes` bytes filled with `tag`, owned by libzmq once sent (zero copy).
    static func make(bytes: Int, tag: Float) -> Message {
        let count = bytes / 4
        guard let p = malloc(max(bytes, 4)) else { fatalError("out of memory allocating \(bytes) bytes") }
        p.bindMemory(to: Float.self, capacity: max(count, 1)).initialize(repeating: tag, count: count)
        return Message(takingMalloced: p, count: bytes)
    }

    /// The tag a received tensor carries (its first element).
    static func readTag(_ m: Message) -> Float? {
        guard m.count >= 4 else { return nil }
        return m.data.loadUnaligned(as: Float.self)
    }
}

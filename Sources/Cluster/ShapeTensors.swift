#if canImport(Glibc)
import Glibc
#endif
import Model
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

    /// A new tensor of `bytes` bytes, owned by libzmq once sent (zero copy). Deterministic contents: the tag
    /// in the first and last element, zeros between (calloc: large buffers come from untouched zero pages, so
    /// paper-scale shapes cost no fill time and no resident memory on the sender).
    static func make(bytes: Int, tag: Float) -> Message {
        let count = bytes / 4
        guard let p = calloc(max(bytes, 4), 1) else { fatalError("out of memory allocating \(bytes) bytes") }
        let floats = p.bindMemory(to: Float.self, capacity: max(count, 1))
        floats[0] = tag
        if count > 1 { floats[count - 1] = tag }
        return Message(takingMalloced: p, count: bytes)
    }

    /// The tag a received tensor carries (its first element), or nil when the first and last disagree.
    static func readTag(_ m: Message) -> Float? {
        guard m.count >= 4 else { return nil }
        let first = m.data.loadUnaligned(as: Float.self)
        let last = m.data.loadUnaligned(fromByteOffset: m.count / 4 * 4 - 4, as: Float.self)
        return first == last ? first : nil
    }
}

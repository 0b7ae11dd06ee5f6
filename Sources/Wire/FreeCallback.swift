#if canImport(Glibc)
import Glibc
#endif

/// libzmq's free callback for zero-copy frames: the buffer was `malloc`'d by the sender (DESIGN §6: a
/// `@convention(c)` callback belongs in its own file).
let attnresFreeCallback: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void = { data, _ in
    free(data)
}

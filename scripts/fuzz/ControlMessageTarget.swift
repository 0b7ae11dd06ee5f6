// libFuzzer target over the control-message decoders: `ControlFrame.decode` applied to both directions,
// `ToWorker` (what a worker decodes) and `FromWorker` (what the coordinator decodes). Linked against the
// SwiftPM-built, coverage-instrumented Wire and Cluster modules (see the Makefile's `fuzz` target).
//
// One input is one control frame (prefix + JSON body). It must decode or be rejected with a `FrameError`; a
// message that decodes must survive an encode/decode round trip, since the coordinator and the workers re-send
// and report what they decoded.
import Cluster
import Wire

/// What one input must satisfy, for one message type.
enum ControlFrameProperties {
    static func check<T: Codable>(_ type: T.Type, _ bytes: UnsafeRawBufferPointer) {
        let value: T
        do { value = try ControlFrame.decode(T.self, from: Message(bytes: Array(bytes))) } catch let e as FrameError {
            _ = e.description
            return
        } catch { fatalError("ControlFrame.decode(\(T.self)) threw a non-FrameError: \(error)") }
        do {
            _ = try ControlFrame.decode(T.self, from: try ControlFrame.encode(value))
        } catch { fatalError("a decoded \(T.self) does not survive encode/decode: \(error)") }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func controlMessageFuzzTarget(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    ControlFrameProperties.check(ToWorker.self, bytes)
    ControlFrameProperties.check(FromWorker.self, bytes)
    return 0
}

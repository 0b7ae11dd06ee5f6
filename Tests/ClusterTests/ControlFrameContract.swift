import Cluster
import Wire

/// What the control-message decoder promises for any frame, in both directions (`ToWorker`, which a worker
/// decodes, and `FromWorker`, which the coordinator decodes): `ControlFrame.decode` returns a message or throws
/// a `FrameError` (never traps), and a decoded message survives an encode/decode round trip, since both sides
/// re-send and report what they decoded. Shared by the corpus replay tests and the libFuzzer target
/// (scripts/fuzz/ControlMessageTarget.swift compiles this file); hence no XCTest here.
enum ControlFrameContract {
    /// The properties `frame` violates as a `T`; empty when it keeps them all.
    static func violations<T: Codable>(_ type: T.Type, _ frame: [UInt8]) -> [String] {
        let value: T
        do { value = try ControlFrame.decode(T.self, from: Message(bytes: frame)) } catch is FrameError {
            return []
        } catch { return ["ControlFrame.decode(\(T.self)) threw \(error), not a FrameError"] }
        do { _ = try ControlFrame.decode(T.self, from: try ControlFrame.encode(value)) } catch {
            return ["a decoded \(T.self) does not survive encode/decode: \(error)"]
        }
        return []
    }

    /// Both directions.
    static func violations(_ frame: [UInt8]) -> [String] {
        violations(ToWorker.self, frame) + violations(FromWorker.self, frame)
    }
}

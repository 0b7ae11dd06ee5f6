import Foundation

/// Control messages (coordinator ↔ workers) are one frame: the 8-byte prefix "ARES", version u16, kind u16 = 16,
/// then a UTF-8 JSON body. Control is off the hot path, so it favours readability over compactness.
public enum ControlFrame {
    public static let kind: UInt16 = 16

    public static func encode<T: Encodable>(_ value: T) throws -> Message {
        var out = Frame.magic
        out.le(Frame.version)
        out.le(kind)
        out += try JSONEncoder().encode(value)
        return Message(bytes: out)
    }

    public static func decode<T: Decodable>(_ type: T.Type, from frame: Message) throws -> T {
        let b = frame.bytes
        guard b.count >= 8 else { throw FrameError.tooShort(b.count) }
        var r = Reader(b)
        let magic = try r.bytes(4)
        guard magic == Frame.magic else { throw FrameError.badMagic(magic) }
        let version: UInt16 = try r.le()
        guard version == Frame.version else { throw FrameError.unsupportedVersion(version) }
        let k: UInt16 = try r.le()
        guard k == kind else { throw FrameError.unknownKind(k) }
        do {
            return try JSONDecoder().decode(T.self, from: Data(b[8...]))
        } catch {
            throw FrameError.malformed("control body is not a valid \(T.self): \(error)")
        }
    }
}

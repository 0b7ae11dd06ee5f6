import Foundation

/// Control messages (coordinator ↔ workers) are one frame: the 8-byte prefix "ARES", version u16, kind u16 = 16,
/// then a UTF-8 JSON object whose `type` names the message (docs/protocol.md). Control is off the hot path, so it
/// favours readability over compactness. Keys are written sorted, so a message has one byte form (the golden
/// frames); a receiver accepts them in any order.
public enum ControlFrame {
    public static let kind: UInt16 = 16
    /// Bytes before the JSON body.
    public static let prefixBytes = 8

    public static func encode<T: Encodable>(_ value: T, version: UInt16 = Frame.version) throws -> Message {
        var out = Frame.magic
        out.le(version)
        out.le(kind)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        out += try encoder.encode(value)
        return Message(bytes: out)
    }

    /// The version in a control frame's prefix (after checking magic and kind), whatever it is: the coordinator
    /// reads it before decoding so that a peer of another version gets a refusal rather than a parse error.
    public static func version(of frame: Message) throws -> UInt16 {
        let b = frame.bytes
        guard b.count >= prefixBytes else { throw FrameError.tooShort(b.count) }
        var r = Reader(b)
        let magic = try r.bytes(4)
        guard magic == Frame.magic else { throw FrameError.badMagic(magic) }
        let version: UInt16 = try r.le()
        let k: UInt16 = try r.le()
        guard k == kind else { throw FrameError.unknownKind(k) }
        return version
    }

    /// The JSON body of a control frame, unparsed (for a peer of another version).
    public static func body(of frame: Message) -> [UInt8] {
        frame.count > prefixBytes ? Array(frame.bytes[prefixBytes...]) : []
    }

    public static func decode<T: Decodable>(_ type: T.Type, from frame: Message) throws -> T {
        let version = try version(of: frame)
        guard version == Frame.version else { throw FrameError.unsupportedVersion(version) }
        do {
            return try JSONDecoder().decode(T.self, from: Data(body(of: frame)))
        } catch {
            throw FrameError.malformed("control body is not a valid \(T.self): \(ControlFrame.describe(error))")
        }
    }

    /// A decoding error in one line: the coding path and what was wrong, not Foundation's nested dump.
    public static func describe(_ error: Error) -> String {
        func path(_ keys: [CodingKey]) -> String {
            keys.isEmpty ? "(top level)" : keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        guard let e = error as? DecodingError else { return "\(error)" }
        switch e {
        case .keyNotFound(let key, let c): return "\(path(c.codingPath + [key])): missing"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }
}

import Wire

/// What the data-frame decoders promise for any header frame, hostile or not: `FrameHeader.decode` returns a
/// header or throws a `FrameError` (never traps), a decoded header re-encodes to itself, its payload sizes are
/// what `validatePayloads` and `DataMessage.decode` accept, and a size off by one frame or one byte is rejected.
/// Shared by the corpus replay test and the libFuzzer target (scripts/fuzz/DataFrameTarget.swift compiles this
/// file), so both check the same properties; hence no XCTest here.
enum DataFrameContract {
    /// Payload frames larger than this in total are not allocated for the whole-message check.
    static let payloadBudget = 1 << 20

    /// The properties `header` (one header frame) violates; empty when it keeps them all.
    static func violations(_ header: [UInt8]) -> [String] {
        var out: [String] = []
        let decoded: FrameHeader
        do { decoded = try header.withUnsafeBytes { try FrameHeader.decode($0) } } catch let e as FrameError {
            out += rejected(by: e, [Message(bytes: header)], "the header alone")
            return out
        } catch { return ["FrameHeader.decode threw \(error), not a FrameError"] }

        if (try? decoded.encode().withUnsafeBytes { try FrameHeader.decode($0) }) != decoded {
            out.append("decode(encode(h)) != h for \(decoded)")
        }
        let sizes = decoded.tensors.map(\.payloadBytes)
        if sizes.contains(where: { $0 < 0 }) { out.append("negative payload size in \(sizes)") }
        do { try decoded.validatePayloads(sizes) } catch { out.append("its own payload sizes \(sizes) rejected: \(error)") }
        if let last = sizes.last {
            out += rejectedByValidation(Array(sizes.dropLast()), decoded, "one payload frame missing")
            out += rejectedByValidation(Array(sizes.dropLast()) + [last == Int.max ? 0 : last + 1], decoded, "one byte more")
            out += rejected(by: nil, [Message(bytes: header)], "the header without its payload frames")
        }
        guard sizes.allSatisfy({ $0 <= payloadBudget }), sizes.reduce(0, +) <= payloadBudget else { return out }
        let frames = [Message(bytes: header)] + sizes.map { Message(bytes: [UInt8](repeating: 0, count: $0)) }
        do {
            let m = try DataMessage.decode(frames)
            if m.header != decoded || m.payloads.map(\.count) != sizes { out.append("DataMessage.decode changed the message") }
        } catch { out.append("DataMessage.decode rejected the well-formed message: \(error)") }
        out += rejected(by: nil, frames + [Message(bytes: [0])], "one payload frame too many")
        return out
    }

    /// `DataMessage.decode(frames)` must throw a `FrameError` (equal to `expected` when given).
    static func rejected(by expected: FrameError?, _ frames: [Message], _ what: String) -> [String] {
        do { _ = try DataMessage.decode(frames) } catch let e as FrameError {
            return expected == nil || e == expected ? [] : ["\(what): DataMessage.decode threw \(e), FrameHeader.decode \(expected!)"]
        } catch { return ["\(what): DataMessage.decode threw \(error), not a FrameError"] }
        return ["\(what): accepted by DataMessage.decode"]
    }

    static func rejectedByValidation(_ sizes: [Int], _ header: FrameHeader, _ what: String) -> [String] {
        do { try header.validatePayloads(sizes) } catch is FrameError { return [] } catch {
            return ["\(what): validatePayloads threw \(error), not a FrameError"]
        }
        return ["\(what): payload sizes \(sizes) accepted"]
    }
}

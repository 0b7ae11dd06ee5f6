import Foundation
import Numerics

/// The safetensors format (huggingface/safetensors): an 8-byte little-endian header length N, N bytes of JSON
/// `{"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}` (offsets relative to the
/// end of the header), then the raw little-endian tensor bytes. Chosen so any framework can load our parameters,
/// batches and gradients. This implementation reads and writes F32 and I32, which is all the project stores.
public struct SafeTensors: Sendable {
    /// Element types we read and write.
    public enum DType: String, Sendable { case f32 = "F32", i32 = "I32" }

    /// One stored tensor: dtype, shape and raw little-endian bytes.
    public struct Entry: Sendable, Equatable {
        public var dtype: DType
        public var shape: [Int]
        public var bytes: [UInt8]

        /// The elements as Float32 (dtype must be F32).
        public func floats() throws -> Tensor {
            guard dtype == .f32 else { throw SafeTensorsError.wrongDType(expected: "F32", found: dtype.rawValue) }
            var data = [Float](repeating: 0, count: bytes.count / 4)
            data.withUnsafeMutableBytes { d in bytes.withUnsafeBytes { d.copyMemory(from: $0) } }
            return Tensor(shape: shape, data: data)
        }

        /// The elements as Int32 (dtype must be I32).
        public func int32s() throws -> [Int32] {
            guard dtype == .i32 else { throw SafeTensorsError.wrongDType(expected: "I32", found: dtype.rawValue) }
            var data = [Int32](repeating: 0, count: bytes.count / 4)
            data.withUnsafeMutableBytes { d in bytes.withUnsafeBytes { d.copyMemory(from: $0) } }
            return data
        }
    }

    /// Names in insertion (write) or file-offset (read) order.
    public private(set) var names: [String] = []
    public private(set) var entries: [String: Entry] = [:]
    /// Free-form string metadata (`__metadata__`).
    public var metadata: [String: String] = [:]

    public init() {}

    /// Adds a Float32 tensor.
    public mutating func add(_ name: String, _ t: Tensor) {
        let bytes = t.data.withUnsafeBytes { Array($0) }
        insert(name, Entry(dtype: .f32, shape: t.shape, bytes: bytes))
    }

    /// Adds an Int32 tensor of the given shape.
    public mutating func add(_ name: String, int32 values: [Int32], shape: [Int]) {
        precondition(shape.reduce(1, *) == values.count)
        insert(name, Entry(dtype: .i32, shape: shape, bytes: values.withUnsafeBytes { Array($0) }))
    }

    private mutating func insert(_ name: String, _ e: Entry) {
        if entries[name] == nil { names.append(name) }
        entries[name] = e
    }

    /// The serialised file: header padded with spaces to a multiple of 8 bytes, then the tensors in `names` order.
    public func serialized() throws -> [UInt8] {
        var header: [String: Any] = [:]
        var offset = 0
        for n in names {
            let e = entries[n]!
            header[n] = ["dtype": e.dtype.rawValue, "shape": e.shape, "data_offsets": [offset, offset + e.bytes.count]]
            offset += e.bytes.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = Array(try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        while json.count % 8 != 0 { json.append(0x20) }
        var out = [UInt8](); out.reserveCapacity(8 + json.count + offset)
        var n = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &n) { out += $0 }
        out += json
        for name in names { out += entries[name]!.bytes }
        return out
    }

    /// Parses a file's bytes; validates the header, dtypes, shapes and offsets.
    public init(bytes: [UInt8]) throws {
        guard bytes.count >= 8 else { throw SafeTensorsError.truncated(what: "header length") }
        var n: UInt64 = 0
        for i in (0..<8).reversed() { n = n << 8 | UInt64(bytes[i]) }
        guard n <= UInt64(bytes.count - 8) else { throw SafeTensorsError.truncated(what: "header of \(n) bytes") }
        let headerEnd = 8 + Int(n)
        guard let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<headerEnd])) as? [String: Any] else {
            throw SafeTensorsError.malformedHeader("not a JSON object")
        }
        var found: [(Int, String)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let d = value as? [String: Any], let dt = d["dtype"] as? String,
                  let shape = d["shape"] as? [Int], let offs = d["data_offsets"] as? [Int], offs.count == 2 else {
                throw SafeTensorsError.malformedHeader("entry \(name)")
            }
            guard let dtype = DType(rawValue: dt) else { throw SafeTensorsError.unsupportedDType(name: name, dtype: dt) }
            // Offsets and shapes come from the file: every sum and product is checked, so a hostile header is an
            // error, never a trap.
            guard offs[0] >= 0, offs[0] <= offs[1], offs[1] <= bytes.count - headerEnd else {
                throw SafeTensorsError.truncated(what: "tensor \(name)")
            }
            let (b, e) = (headerEnd + offs[0], headerEnd + offs[1])
            var elements = 1
            for dim in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
                guard dim >= 0, !overflow, product <= bytes.count else {
                    throw SafeTensorsError.malformedHeader("\(name): shape \(shape) does not fit in the file")
                }
                elements = product
            }
            guard e - b == elements * 4 else {
                throw SafeTensorsError.malformedHeader("\(name): \(e - b) bytes for shape \(shape)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, bytes: Array(bytes[b..<e]))
            found.append((offs[0], name))
        }
        names = found.sorted { $0 < $1 }.map(\.1)
    }

    /// Reads a file.
    public init(contentsOf url: URL) throws {
        try self.init(bytes: Array(try Data(contentsOf: url)))
    }

    /// Writes a file.
    public func write(to url: URL) throws { try Data(try serialized()).write(to: url) }

    /// All F32 entries as a `ParameterSet` with the specs of `specs` (shapes must match).
    public func parameters(specs: [ParameterSpec]) throws -> ParameterSet {
        var p = ParameterSet()
        for s in specs {
            guard let e = entries[s.name] else { throw SafeTensorsError.missing(name: s.name) }
            let t = try e.floats()
            guard t.shape == s.shape else { throw SafeTensorsError.malformedHeader("\(s.name): shape \(t.shape) ≠ \(s.shape)") }
            p.insert(s, t)
        }
        return p
    }
}

/// Why a safetensors file could not be read.
public enum SafeTensorsError: Error, CustomStringConvertible {
    case truncated(what: String)
    case malformedHeader(String)
    case unsupportedDType(name: String, dtype: String)
    case wrongDType(expected: String, found: String)
    case missing(name: String)

    public var description: String {
        switch self {
        case let .truncated(w): return "safetensors: file ends inside the \(w)"
        case let .malformedHeader(m): return "safetensors: malformed header: \(m)"
        case let .unsupportedDType(n, d): return "safetensors: tensor \(n) has dtype \(d); only F32 and I32 are supported"
        case let .wrongDType(e, f): return "safetensors: expected \(e), found \(f)"
        case let .missing(n): return "safetensors: no tensor named \(n)"
        }
    }
}

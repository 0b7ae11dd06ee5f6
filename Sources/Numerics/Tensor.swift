/// A dense, contiguous, row-major Float32 tensor.
///
/// Why so plain: every op in this module reads and writes flat buffers handed straight to OpenBLAS, and a
/// value type with copy-on-write storage keeps ownership obvious (caller-owned gradients are `inout`).
/// The last dimension is the fastest-varying one; a `[rows, cols]` matrix is stored row by row.
public struct Tensor: Equatable, Sendable {
    /// Extent of each dimension, outermost first.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `data.count == shape.reduce(1, *)`.
    public var data: [Float]

    /// A zero-filled tensor of the given shape.
    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    /// A tensor of the given shape filled with one value (e.g. RMSNorm gains start at 1).
    public init(repeating value: Float, shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: value, count: shape.reduce(1, *))
    }

    /// Wraps existing elements; traps when the element count does not match the shape (a programming error).
    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "Tensor: \(data.count) elements do not fill shape \(shape)")
        self.shape = shape
        self.data = data
    }

    /// Number of elements.
    @inlinable public var count: Int { data.count }
    /// Number of rows when viewed as a matrix `[count / lastDim, lastDim]`.
    public var rows: Int { shape.count <= 1 ? 1 : count / shape[shape.count - 1] }
    /// Size of the last dimension (the feature dimension for activations).
    public var cols: Int { shape.last ?? 1 }

    /// The same elements under another shape with the same element count.
    public func reshaped(_ newShape: [Int]) -> Tensor { Tensor(shape: newShape, data: data) }

    /// Sets every element to zero, keeping the shape (explicit zeroing of accumulated gradients).
    public mutating func zero() {
        data.withUnsafeMutableBufferPointer { p in for i in p.indices { p[i] = 0 } }
    }

    /// Elementwise `self += other`; shapes must hold the same number of elements.
    public mutating func add(_ other: Tensor) {
        precondition(count == other.count, "Tensor.add: \(shape) vs \(other.shape)")
        data.withUnsafeMutableBufferPointer { a in
            other.data.withUnsafeBufferPointer { b in for i in a.indices { a[i] += b[i] } }
        }
    }

    /// Elementwise `self += alpha * other`.
    public mutating func add(_ other: Tensor, scaledBy alpha: Float) {
        precondition(count == other.count, "Tensor.add: \(shape) vs \(other.shape)")
        data.withUnsafeMutableBufferPointer { a in
            other.data.withUnsafeBufferPointer { b in for i in a.indices { a[i] += alpha * b[i] } }
        }
    }

    /// Root mean square of the elements (used for the PreNorm-dilution statistics).
    public var rms: Float {
        guard count > 0 else { return 0 }
        var s: Double = 0
        for x in data { s += Double(x) * Double(x) }
        return Float((s / Double(count)).squareRoot())
    }

    /// Largest absolute difference to another tensor of the same element count.
    public func maxAbsDifference(_ other: Tensor) -> Float {
        precondition(count == other.count)
        var m: Float = 0
        for i in 0..<count { m = max(m, abs(data[i] - other.data[i])) }
        return m
    }
}

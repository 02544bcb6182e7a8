// A dense float32 tensor: a shape and row-major (C order) values.

/// Float32 values with a shape, row-major (last index fastest). NCHW for images.
public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    /// A tensor of zeros.
    public init(zeros shape: [Int]) {
        self.shape = shape
        data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    /// Wraps values; `data.count` must equal the product of `shape`.
    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not hold \(data.count) values")
        self.shape = shape
        self.data = data
    }

    /// A tensor whose values are written by `fill` (which must write every element).
    public init(shape: [Int], fill: (UnsafeMutablePointer<Float>) throws -> Void) rethrows {
        let n = shape.reduce(1, *)
        self.shape = shape
        data = try [Float](unsafeUninitializedCapacity: n) { buf, count in
            if let b = buf.baseAddress { try fill(b) }
            count = n
        }
    }

    public var count: Int { data.count }

    /// The same values under another shape of equal size.
    public func reshaped(_ s: [Int]) -> Tensor { Tensor(shape: s, data: data) }
}

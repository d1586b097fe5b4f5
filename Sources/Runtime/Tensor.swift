/// A dense float32 tensor, row-major (C order), NHWC for images; `shape` includes the batch axis.
public struct Tensor: Equatable, Sendable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "shape \(shape) does not hold \(data.count) values")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.init(shape: shape, data: Array(repeating: 0, count: shape.reduce(1, *)))
    }

    public var count: Int { data.count }
    public var batch: Int { shape.first ?? 1 }
    /// Values per batch item.
    public var itemCount: Int { shape.dropFirst().reduce(1, *) }

    /// Items `range` of the batch.
    public func slice(batch range: Range<Int>) -> Tensor {
        let n = itemCount
        return Tensor(shape: [range.count] + shape.dropFirst(), data: Array(data[range.lowerBound * n ..< range.upperBound * n]))
    }
}

/// Every failure of Runtime: one line naming the input, layer or file at fault.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

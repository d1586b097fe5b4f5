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
    /// Where the remedy is a setting of the caller's, which one, so that a command line can name
    /// its own option for it (the message says what to do in the library's words).
    public enum Remedy: Sendable, Equatable {
        case labelColumns   // name a CSV's label columns instead of taking every column but the file's
    }
    public var message: String
    public var remedy: Remedy?
    public init(_ message: String, remedy: Remedy? = nil) {
        self.message = message
        self.remedy = remedy
    }
    public var description: String { message }
}

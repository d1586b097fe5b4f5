import Foundation

/// An image that could not be loaded: which file, and the reason (the decoder's own message
/// where there is one). Printed as one line.
public struct ImageError: Error, CustomStringConvertible, LocalizedError, Equatable {
    public let file: String
    public let reason: String

    public init(file: String, reason: String) {
        self.file = file
        self.reason = reason
    }

    public var description: String { "cannot load image '\(file)': \(reason)" }
    public var errorDescription: String? { description }
}

/// Thrown inside the decoders, which do not know the file name; `Image` adds it.
struct DecodeFailure: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

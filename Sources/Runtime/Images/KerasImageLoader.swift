import Graph
import Foundation

/// An image as `keras.utils.img_to_array` returns it: float32, HWC, row-major.
public struct ImageArray: Sendable, Equatable {
    public let height: Int
    public let width: Int
    public let channels: Int
    /// `height * width * channels` values, 0...255 (0...65535 for a 16-bit grey PNG loaded with
    /// channels 1: Keras keeps PIL's "I;16" image unconverted).
    public let values: [Float]
}

/// `keras.utils.load_img(path, color_mode=..., target_size=(h, w), interpolation=...)` followed
/// by `img_to_array`. `channels` 3 is color_mode "rgb", 1 is "grayscale". The image is resized
/// only when a target size is given and differs from the image's own; both target dimensions
/// are given or neither.
public func loadImage(path: String, channels: Int = 3, targetHeight: Int? = nil, targetWidth: Int? = nil,
                      interpolation: Interpolation = .nearest) throws -> ImageArray {
    let image = try kerasImage(contentsOfFile: path, channels: channels, targetHeight: targetHeight,
                               targetWidth: targetWidth, interpolation: interpolation)
    return ImageArray(height: image.height, width: image.width, channels: channels, values: image.floatValues())
}

/// `loadImage` for bytes already in memory; `name` appears in errors.
public func loadImage(data: Data, name: String, channels: Int = 3, targetHeight: Int? = nil,
                      targetWidth: Int? = nil, interpolation: Interpolation = .nearest) throws -> ImageArray {
    let image = try kerasImage(Image(data: data, name: name), name: name, channels: channels,
                               targetHeight: targetHeight, targetWidth: targetWidth, interpolation: interpolation)
    return ImageArray(height: image.height, width: image.width, channels: channels, values: image.floatValues())
}

/// `loadImage` writing `targetHeight * targetWidth * channels` HWC values into `buffer` (which
/// must have exactly that many elements): one image's slot of an NHWC batch. `fastDecode`: a JPEG
/// at least twice the target size is decoded at a reduced DCT scale first (not Keras's pixels).
public func loadImage(path: String, channels: Int, targetHeight: Int, targetWidth: Int,
                      interpolation: Interpolation = .nearest, fastDecode: Bool = false,
                      into buffer: UnsafeMutableBufferPointer<Float>) throws {
    let needed = targetHeight * targetWidth * channels
    guard buffer.count == needed else {
        throw ImageError(file: path, reason: "buffer holds \(buffer.count) floats, \(targetHeight)x\(targetWidth)x\(channels) needs \(needed)")
    }
    try kerasImage(contentsOfFile: path, channels: channels, targetHeight: targetHeight, targetWidth: targetWidth,
                   interpolation: interpolation, fastDecode: fastDecode).writeFloatValues(into: buffer)
}

/// The 8-bit image a loader makes of a file at a target size: Keras's `load_img`
/// (`kerasImage(contentsOfFile:...)`), or with `fastDecode` a JPEG at least twice the target size
/// decoded at a reduced DCT scale first, then Keras's colour-mode and resize steps (not Keras's
/// pixels). The batches, `predict --images` and the pre-flight check all decode through here.
func kerasImage(contentsOfFile path: String, channels: Int, targetHeight: Int, targetWidth: Int,
                interpolation: Interpolation, fastDecode: Bool) throws -> Image {
    try kerasImage(contentsOfFile: path, channels: channels, targetHeight: targetHeight, targetWidth: targetWidth,
                   interpolation: interpolation, decodeAtLeast: fastDecode ? (targetWidth, targetHeight) : nil)
}

/// `kerasImage(Image(contentsOfFile: path, decodeAtLeast:), ...)`: Keras's `load_img` of a file
/// (`decodeAtLeast` nil), or the `--fast-decode` decode. A JPEG stored in the colour mode asked for
/// and resized nearest is decoded keeping only the pixels the resize picks
/// (`JPEGDecoder.decodeResizedNearest`): the same image, at a fraction of the memory traffic.
func kerasImage(contentsOfFile path: String, channels: Int, targetHeight: Int?, targetWidth: Int?,
                interpolation: Interpolation, decodeAtLeast: (width: Int, height: Int)? = nil) throws -> Image {
    let data = try Image.fileBytes(path)
    if interpolation == .nearest, let height = targetHeight, let width = targetWidth, height > 0, width > 0 {
        do {
            let picked = try data.withUnsafeBytes { bytes -> Image? in
                guard try ImageFormat.detect(bytes) == .jpeg else { return nil }
                return try JPEGDecoder.decodeResizedNearest(bytes, channels: channels, width: width, height: height,
                                                            atLeast: decodeAtLeast)
            }
            if let picked { return picked }
        } catch let failure as DecodeFailure {
            throw ImageError(file: path, reason: failure.reason)
        }
    }
    return try kerasImage(Image(data: data, name: path, decodeAtLeast: decodeAtLeast), name: path, channels: channels,
                          targetHeight: targetHeight, targetWidth: targetWidth, interpolation: interpolation)
}

/// Keras's colour-mode step then its resize step, on a decoded image.
/// grayscale: "L" and "I;16" are kept as they are, anything else becomes `convert("L")`.
/// rgb: anything not "RGB" becomes `convert("RGB")`.
func kerasImage(_ image: Image, name: String, channels: Int, targetHeight: Int?, targetWidth: Int?,
                interpolation: Interpolation) throws -> Image {
    var converted: Image
    switch channels {
    case 3: converted = image.convertedToRGB()
    case 1: converted = image.mode == .i16 ? image : image.convertedToL()
    default: throw ImageError(file: name, reason: "channels must be 1 (grayscale) or 3 (rgb), got \(channels)")
    }
    switch (targetHeight, targetWidth) {
    case (nil, nil):
        break
    case let (height?, width?):
        guard height > 0 && width > 0 else {
            throw ImageError(file: name, reason: "target size \(height)x\(width) is not positive")
        }
        converted = converted.resized(width: width, height: height, interpolation: interpolation)
    default:
        throw ImageError(file: name, reason: "targetHeight and targetWidth must be given together")
    }
    return converted
}

extension Image {
    /// The samples as Float, in storage order (HWC).
    public func floatValues() -> [Float] {
        let n = width * height * mode.channels
        return [Float](unsafeUninitializedCapacity: n) { buffer, count in
            writeFloatValues(into: UnsafeMutableBufferPointer(rebasing: buffer[0..<n]))
            count = n
        }
    }

    /// Writes the samples as Float, HWC, into `buffer`, which holds exactly that many.
    public func writeFloatValues(into buffer: UnsafeMutableBufferPointer<Float>) {
        precondition(buffer.count == width * height * mode.channels, "buffer size does not match the image")
        if mode == .i16 {
            for i in 0..<buffer.count { buffer[i] = Float(pixels16[i]) }
        } else {
            for i in 0..<buffer.count { buffer[i] = Float(pixels[i]) }
        }
    }
}

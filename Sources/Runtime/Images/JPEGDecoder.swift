import CJPEGShim
import Foundation

/// JPEG through libjpeg-turbo (the C shim does libjpeg's setjmp error recovery). This is the only
/// Swift file that imports CJPEGShim.
///
/// Decodes as PIL does for Keras: in the stored colour space (1 component -> L, 3 -> RGB,
/// 4 -> CMYK), default libjpeg settings (islow DCT, fancy upsampling), no EXIF rotation. A colour
/// JPEG wanted in grayscale is decoded to RGB and converted with PIL's formula, not libjpeg's
/// Y-plane grey output, which differs.
enum JPEGDecoder {
    /// `atLeast` (width, height): a photo at least twice that size is decoded at a reduced DCT
    /// scale still covering it (`--fast-decode`; not PIL's pixels).
    static func decode(_ bytes: UnsafeRawBufferPointer, atLeast: (width: Int, height: Int)? = nil) throws -> Image {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var width: Int32 = 0, height: Int32 = 0, channels: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = dctl_jpeg_decode_native(
            bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
            Int32(clamping: atLeast?.width ?? 0), Int32(clamping: atLeast?.height ?? 0),
            &out, &width, &height, &channels, &message, message.count)
        defer { free(out) }
        guard status == 0, let out else { throw failure(message) }
        let count = Int(width) * Int(height) * Int(channels)
        let pixels = Array(UnsafeBufferPointer(start: out, count: count))
        switch channels {
        case 1: return Image(width: Int(width), height: Int(height), mode: .l, pixels: pixels)
        case 3: return Image(width: Int(width), height: Int(height), mode: .rgb, pixels: pixels)
        case 4:
            // PIL reads 4-component JPEGs as "CMYK;I": Adobe's inverted convention.
            return Image(width: Int(width), height: Int(height), mode: .cmyk, pixels: pixels.map { 255 - $0 })
        default: throw DecodeFailure("JPEG decoder: unsupported channel count \(channels)")
        }
    }

    /// `decode` (with `atLeast`, its DCT scaling) followed by a nearest resize to `width` x
    /// `height` (`Image.resized`), for a JPEG stored with `channels` components (3: RGB, 1: grey)
    /// whose decoded size differs from the target: each scanline is decoded into one row and only
    /// the pixels the resize picks are kept, the same pixels without the decoded image (an 800x600
    /// photo: 1.4 MB written, copied and read back scattered, where 0.16 MB are kept). nil for any
    /// other JPEG (the caller decodes it whole).
    static func decodeResizedNearest(_ bytes: UnsafeRawBufferPointer, channels: Int, width: Int, height: Int,
                                     atLeast: (width: Int, height: Int)? = nil) throws -> Image? {
        var message = [CChar](repeating: 0, count: 256)
        var sourceWidth: Int32 = 0, sourceHeight: Int32 = 0, stored: Int32 = 0
        guard let reader = dctl_jpeg_open(bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count,
                                          Int32(clamping: atLeast?.width ?? 0), Int32(clamping: atLeast?.height ?? 0),
                                          &sourceWidth, &sourceHeight, &stored, &message, message.count) else {
            throw failure(message)
        }
        guard Int(stored) == channels, channels == 3 || channels == 1,
              Int(sourceWidth) != width || Int(sourceHeight) != height else {
            dctl_jpeg_close(reader)
            return nil
        }
        let rows = Image.accumulatedIndices(inSize: Int(sourceHeight), outSize: height).map { Int32($0) }
        let columns = Image.accumulatedIndices(inSize: Int(sourceWidth), outSize: width).map { Int32($0) }
        var status: Int32 = 0
        let pixels = [UInt8](unsafeUninitializedCapacity: width * height * channels) { buffer, count in
            status = dctl_jpeg_decode_picked(reader, rows, Int32(height), columns, Int32(width), buffer.baseAddress,
                                             &message, message.count)
            count = buffer.count
        }
        guard status == 0 else { throw failure(message) }
        return Image(width: width, height: height, mode: channels == 3 ? .rgb : .l, pixels: pixels)
    }

    private static func failure(_ message: [CChar]) -> DecodeFailure {
        let reason = String(cString: message)
        return DecodeFailure("JPEG decoder: \(reason.isEmpty ? "failed" : reason)")
    }
}

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
        guard status == 0, let out else {
            let reason = String(cString: message)
            throw DecodeFailure("JPEG decoder: \(reason.isEmpty ? "failed" : reason)")
        }
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
}

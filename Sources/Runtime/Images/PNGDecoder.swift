import CPNG
import Foundation

/// PNG through libpng's simplified API (errors come back in `image.message`, no longjmp). This is
/// the only Swift file that imports CPNG.
///
/// The simplified API converts whatever it reads to the format asked for, so each PNG layout is
/// read in the format that gives PIL's samples back unchanged (gamma/transparency chunks are
/// stripped first, see `PNGChunks`):
///
/// | PNG                  | PIL opens as        | read here as                                  |
/// |----------------------|---------------------|-----------------------------------------------|
/// | grey 1/2/4/8-bit     | 1 / L               | GRAY (bits replicated: 0/255, x85, x17)       |
/// | grey 16-bit          | I;16 (0...65535)    | LINEAR_Y, no gamma: the stored values         |
/// | RGB / palette        | RGB / P             | RGB (palette expanded)                        |
/// | RGB 16-bit           | RGB, high bytes     | LINEAR_RGB, then >> 8                         |
/// | grey+alpha 8-bit     | LA                  | GA                                            |
/// | grey+alpha 16-bit    | RGBA (L,L,L,A) high | IHDR retyped to 8-bit RGBA (same 4 bytes a    |
/// |                      | bytes               | pixel, same filters): bytes Lhi Llo Ahi Alo   |
/// | RGBA 8-bit           | RGBA                | RGBA (8-bit output is not premultiplied)      |
/// | RGBA 16-bit          | RGBA, high bytes    | see `rgba16`: exact where opaque, else +-1    |
enum PNGDecoder {
    static func decode(_ bytes: UnsafeRawBufferPointer) throws -> Image {
        let (header, file) = try PNGChunks.sanitize(bytes) { header in
            header.colorType == 4 && header.bitDepth == 16 ? (bitDepth: 8, colorType: 6) : nil
        }
        switch (header.colorType, header.bitDepth) {
        case (0, 16):
            let (w, h, samples) = try read(file, format: Format.linearGray, as: UInt16.self)
            return Image(width: w, height: h, pixels16: samples)
        case (0, _):
            let (w, h, samples) = try read(file, format: Format.gray, as: UInt8.self)
            return Image(width: w, height: h, mode: .l, pixels: samples)
        case (2, 16):
            let (w, h, samples) = try read(file, format: Format.linearRGB, as: UInt16.self)
            return Image(width: w, height: h, mode: .rgb, pixels: samples.map { UInt8($0 >> 8) })
        case (2, _), (3, _):
            let (w, h, samples) = try read(file, format: Format.rgb, as: UInt8.self)
            return Image(width: w, height: h, mode: .rgb, pixels: samples)
        case (4, 16):
            let (w, h, bytes) = try read(file, format: Format.rgba, as: UInt8.self)
            var rgba = [UInt8](repeating: 0, count: bytes.count)
            for p in stride(from: 0, to: bytes.count, by: 4) {
                rgba[p] = bytes[p]; rgba[p + 1] = bytes[p]; rgba[p + 2] = bytes[p]; rgba[p + 3] = bytes[p + 2]
            }
            return Image(width: w, height: h, mode: .rgba, pixels: rgba)
        case (4, _):
            let (w, h, samples) = try read(file, format: Format.grayAlpha, as: UInt8.self)
            return Image(width: w, height: h, mode: .la, pixels: samples)
        case (6, 16):
            return try rgba16(file)
        case (6, _):
            let (w, h, samples) = try read(file, format: Format.rgba, as: UInt8.self)
            return Image(width: w, height: h, mode: .rgba, pixels: samples)
        default:
            throw DecodeFailure("PNG: unsupported colour type \(header.colorType) with bit depth \(header.bitDepth)")
        }
    }

    /// 16-bit RGBA: PIL keeps each sample's high byte. The simplified API offers 16-bit output only
    /// premultiplied by alpha, and 8-bit output only rounded (v/257, not v>>8). Opaque pixels take
    /// the 16-bit read (exact); translucent ones the rounded 8-bit read, which differs from PIL by
    /// at most 1 where the low byte is far from the high byte. Alpha itself is exact.
    private static func rgba16(_ file: [UInt8]) throws -> Image {
        let (w, h, wide) = try read(file, format: Format.linearRGBA, as: UInt16.self)
        let (_, _, rounded) = try read(file, format: Format.rgba, flags: UInt32(PNG_IMAGE_FLAG_16BIT_sRGB),
                                       as: UInt8.self)
        var pixels = rounded
        for p in stride(from: 0, to: wide.count, by: 4) {
            pixels[p + 3] = UInt8(wide[p + 3] >> 8)
            if wide[p + 3] == 0xFFFF {
                for c in 0..<3 { pixels[p + c] = UInt8(wide[p + c] >> 8) }
            }
        }
        return Image(width: w, height: h, mode: .rgba, pixels: pixels)
    }

    /// The simplified API's `PNG_FORMAT_*` values (the composite macros do not import into Swift).
    private enum Format {
        static let gray: UInt32 = 0
        static let grayAlpha = PNG_FORMAT_FLAG_ALPHA
        static let rgb = PNG_FORMAT_FLAG_COLOR
        static let rgba = PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA
        static let linearGray = PNG_FORMAT_FLAG_LINEAR
        static let linearRGB = PNG_FORMAT_FLAG_LINEAR | PNG_FORMAT_FLAG_COLOR
        static let linearRGBA = PNG_FORMAT_FLAG_LINEAR | PNG_FORMAT_FLAG_COLOR | PNG_FORMAT_FLAG_ALPHA
    }

    /// One simplified-API read of a sanitised file into `format` samples of type T.
    private static func read<T: FixedWidthInteger>(_ file: [UInt8], format: UInt32, flags: UInt32 = 0,
                                                  as _: T.Type) throws -> (Int, Int, [T]) {
        let handle = SimplifiedPNG()
        return try file.withUnsafeBytes { memory in
            // libpng keeps reading `memory` until finish_read, so both calls stay in this closure.
            guard png_image_begin_read_from_memory(&handle.image, memory.baseAddress, memory.count) != 0 else {
                throw DecodeFailure("PNG decoder: \(handle.message)")
            }
            handle.image.format = format
            handle.image.flags |= flags
            let width = Int(handle.image.width), height = Int(handle.image.height)
            let channels = (format & PNG_FORMAT_FLAG_COLOR != 0 ? 3 : 1) + (format & PNG_FORMAT_FLAG_ALPHA != 0 ? 1 : 0)
            let (count, overflow) = (width * height).multipliedReportingOverflow(by: channels)
            guard !overflow, count < Int(Int32.max) else {
                throw DecodeFailure("PNG: image of \(width)x\(height) is too large")
            }
            var samples = [T](repeating: 0, count: count)
            let ok = samples.withUnsafeMutableBytes { buffer in
                png_image_finish_read(&handle.image, nil, buffer.baseAddress, 0, nil)
            }
            guard ok != 0 else { throw DecodeFailure("PNG decoder: \(handle.message)") }
            return (width, height, samples)
        }
    }
}

/// Owns a libpng simplified-API `png_image` (its opaque read state) and frees it in deinit.
private final class SimplifiedPNG {
    var image = png_image()

    init() { image.version = UInt32(PNG_IMAGE_VERSION) }

    deinit { png_image_free(&image) }

    var message: String {
        let text = withUnsafeBytes(of: image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return text.isEmpty ? "failed" : text
    }
}

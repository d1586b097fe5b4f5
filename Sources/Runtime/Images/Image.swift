import Foundation

/// The file formats `Image` decodes, recognised by their first bytes (never by the file name).
public enum ImageFormat: String, Sendable {
    case jpeg = "JPEG"
    case png = "PNG"

    /// JPEG starts with SOI + a marker (ff d8 ff); PNG with its 8-byte signature.
    static func detect(_ bytes: UnsafeRawBufferPointer) throws -> ImageFormat {
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) { return .jpeg }
        if bytes.starts(with: PNGChunks.signature) { return .png }
        if bytes.isEmpty { throw DecodeFailure("empty file") }
        throw DecodeFailure("unsupported image format (\(otherFormatName(bytes))); JPEG and PNG are supported")
    }

    /// Names formats Keras (through PIL) may read but this loader does not, for a clearer error.
    private static func otherFormatName(_ bytes: UnsafeRawBufferPointer) -> String {
        let known: [(String, [UInt8])] = [
            ("GIF", Array("GIF8".utf8)), ("BMP", Array("BM".utf8)), ("TIFF", [0x49, 0x49, 0x2A, 0]),
            ("TIFF", [0x4D, 0x4D, 0, 0x2A]), ("WebP", Array("RIFF".utf8)),
        ]
        for (name, magic) in known where bytes.starts(with: magic) { return "looks like \(name)" }
        let head = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
        return "first bytes \(head)"
    }
}

/// A decoded image, in the pixel layout PIL gives the same file, so that Keras's conversions
/// (`convert("RGB")`, `convert("L")`) and resizing can be reproduced exactly.
public struct Image: Sendable, Equatable {
    /// PIL's modes for the files Keras's loader meets. Palette PNGs are expanded to `.rgb` (PIL's
    /// "P" converts to the same RGB and L values); 16-bit grey+alpha PNGs are `.rgba`, as in PIL.
    public enum Mode: String, Sendable {
        case l = "L", la = "LA", rgb = "RGB", rgba = "RGBA", cmyk = "CMYK"
        /// 16-bit grey PNG ("I;16"): values 0...65535, kept in `pixels16`.
        case i16 = "I;16"

        public var channels: Int {
            switch self {
            case .l, .i16: return 1
            case .la: return 2
            case .rgb: return 3
            case .rgba, .cmyk: return 4
            }
        }
    }

    public let width: Int
    public let height: Int
    public let mode: Mode
    /// Interleaved 8-bit samples, row-major, `mode.channels` per pixel (empty for `.i16`).
    public let pixels: [UInt8]
    /// 16-bit samples for `.i16` (empty otherwise).
    public let pixels16: [UInt16]

    public init(width: Int, height: Int, mode: Mode, pixels: [UInt8]) {
        precondition(mode != .i16 && pixels.count == width * height * mode.channels,
                     "pixel count does not match \(width)x\(height) \(mode.rawValue)")
        self.width = width
        self.height = height
        self.mode = mode
        self.pixels = pixels
        self.pixels16 = []
    }

    public init(width: Int, height: Int, pixels16: [UInt16]) {
        precondition(pixels16.count == width * height, "pixel count does not match \(width)x\(height) I;16")
        self.width = width
        self.height = height
        self.mode = .i16
        self.pixels = []
        self.pixels16 = pixels16
    }

    /// Reads and decodes a JPEG or PNG file; the format is taken from the content.
    /// `decodeAtLeast` (width, height): a JPEG at least twice that size is decoded with
    /// libjpeg-turbo's DCT scaling to the smallest size still covering it (faster, and each pixel
    /// averages a block where PIL's full decode and nearest resize pick one); nil: PIL's decode.
    public init(contentsOfFile path: String, decodeAtLeast: (width: Int, height: Int)? = nil) throws {
        try self.init(data: try Self.fileBytes(path), name: path, decodeAtLeast: decodeAtLeast)
    }

    /// The bytes of an image file, or its reading failure as an `ImageError`.
    static func fileBytes(_ path: String) throws -> Data {
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ImageError(file: path, reason: Self.readFailure(path, error))
        }
    }

    /// Decodes JPEG or PNG bytes; `name` is used in error messages.
    public init(data: Data, name: String = "<memory>", decodeAtLeast: (width: Int, height: Int)? = nil) throws {
        do {
            self = try data.withUnsafeBytes { bytes in
                switch try ImageFormat.detect(bytes) {
                case .jpeg: return try JPEGDecoder.decode(bytes, atLeast: decodeAtLeast)
                case .png: return try PNGDecoder.decode(bytes)
                }
            }
        } catch let failure as DecodeFailure {
            throw ImageError(file: name, reason: failure.reason)
        }
    }

    private static func readFailure(_ path: String, _ error: Error) -> String {
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            return "no such file"
        }
        if isDirectory.boolValue { return "is a directory" }
        return "unreadable (\((error as NSError).localizedDescription))"
    }
}

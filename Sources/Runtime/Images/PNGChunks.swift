/// PNG chunk surgery done before libpng sees a file, so that libpng's simplified API returns the
/// samples PIL returns and accepts and rejects the files PIL does:
/// - Every ancillary chunk is dropped. PIL ignores gAMA/sRGB/iCCP/cHRM when decoding, while
///   libpng's simplified API would gamma-correct to sRGB; tRNS would make libpng composite or add
///   alpha, while PIL's convert("RGB") keeps the stored colours.
/// - CRCs: PIL checks every chunk before the image data ("broken PNG file"), so do we; it does
///   not check IDAT CRCs (only zlib's own checksum), while libpng rejects a bad one, so IDAT
///   chunks are passed on with their CRC recomputed.
/// - PIL stops at the first chunk after the image data, and so do we: later chunks, a missing
///   IEND or trailing garbage are accepted, and IEND is synthesised.
/// Other critical chunks (IHDR, PLTE, unknown ones) pass through; libpng checks their content.
enum PNGChunks {
    static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    struct Header {
        var width: Int
        var height: Int
        var bitDepth: Int
        var colorType: Int
    }

    /// The sanitised file and its IHDR. `retype` rewrites IHDR's bit depth and colour type (and its
    /// CRC) without touching the image data; see `PNGDecoder` for the one use.
    static func sanitize(_ bytes: UnsafeRawBufferPointer,
                         retype: ((Header) -> (bitDepth: UInt8, colorType: UInt8)?)? = nil)
        throws -> (header: Header, file: [UInt8]) {
        guard bytes.starts(with: signature) else { throw DecodeFailure("PNG: bad signature") }
        var out = signature
        out.reserveCapacity(bytes.count + 12)
        var header: Header? = nil
        var seenData = false
        var at = signature.count
        while true {
            guard at + 8 <= bytes.count else {
                if seenData { break }
                throw DecodeFailure("PNG: truncated file (\(bytes.count) bytes, no image data)")
            }
            let length = Int(readUInt32(bytes, at))
            let type = Array(bytes[(at + 4)..<(at + 8)])
            let name = String(decoding: type, as: UTF8.self)
            let end = at + 12 + length
            guard length < 0x8000_0000, end <= bytes.count else {
                if seenData && name != "IDAT" { break }
                throw DecodeFailure("PNG: truncated file (chunk '\(name)' ends past the end of the file)")
            }
            if name == "IEND" || (seenData && name != "IDAT") { break }
            if name == "IDAT" {
                seenData = true
                out.append(contentsOf: bytes[at..<(at + 8 + length)])
                out.append(contentsOf: bigEndianBytes(crc32(bytes[(at + 4)..<(at + 8 + length)])))
                at = end
                continue
            }
            guard crc32(bytes[(at + 4)..<(at + 8 + length)]) == readUInt32(bytes, at + 8 + length) else {
                throw DecodeFailure("PNG: bad CRC in '\(name)' chunk (broken PNG file)")
            }
            if type[0] & 0x20 != 0 {
                // ancillary: dropped
            } else if name == "IHDR" {
                guard length == 13 else { throw DecodeFailure("PNG: IHDR chunk of length \(length)") }
                var ihdr = Array(bytes[at..<end])
                let parsed = Header(width: Int(readUInt32(bytes, at + 8)), height: Int(readUInt32(bytes, at + 12)),
                                    bitDepth: Int(ihdr[16]), colorType: Int(ihdr[17]))
                header = parsed
                if let (depth, color) = retype?(parsed) {
                    ihdr[16] = depth
                    ihdr[17] = color
                    ihdr.replaceSubrange(21..<25, with: bigEndianBytes(crc32(ihdr[4..<21])))
                }
                out.append(contentsOf: ihdr)
            } else {
                out.append(contentsOf: bytes[at..<end])
            }
            at = end
        }
        guard let header else { throw DecodeFailure("PNG: no IHDR chunk") }
        out.append(contentsOf: [0, 0, 0, 0] + Array("IEND".utf8) + bigEndianBytes(crc32(Array("IEND".utf8))))
        return (header, out)
    }

    static func readUInt32(_ bytes: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        (UInt32(bytes[at]) << 24) | (UInt32(bytes[at + 1]) << 16) | (UInt32(bytes[at + 2]) << 8) | UInt32(bytes[at + 3])
    }

    static func bigEndianBytes(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }

    /// CRC-32 as PNG (and zlib) define it: reflected polynomial 0xEDB88320.
    static func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
}

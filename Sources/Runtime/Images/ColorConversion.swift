/// PIL's `Image.convert("RGB")` and `convert("L")`, integer for integer (Pillow's
/// src/libImaging/Convert.c), for the modes `Image` decodes.
extension Image {
    /// `convert("RGB")`: grey is replicated, alpha dropped, CMYK through PIL's cmyk2rgb, and
    /// 16-bit grey *clipped* at 255 (PIL's I16_RGB: v < 256 ? v : 255), as PIL does.
    public func convertedToRGB() -> Image {
        if mode == .rgb { return self }
        let n = width * height
        var out = [UInt8](repeating: 0, count: n * 3)
        switch mode {
        case .rgb:
            return self
        case .l, .la:
            let step = mode.channels
            for i in 0..<n {
                let v = pixels[i * step]
                out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v
            }
        case .i16:
            for i in 0..<n {
                let v = UInt8(min(pixels16[i], 255))
                out[3 * i] = v; out[3 * i + 1] = v; out[3 * i + 2] = v
            }
        case .rgba:
            for i in 0..<n {
                out[3 * i] = pixels[4 * i]; out[3 * i + 1] = pixels[4 * i + 1]; out[3 * i + 2] = pixels[4 * i + 2]
            }
        case .cmyk:
            for i in 0..<n {
                let nk = 255 - Int(pixels[4 * i + 3])
                for c in 0..<3 {
                    out[3 * i + c] = clip8(nk - mulDiv255(Int(pixels[4 * i + c]), nk))
                }
            }
        }
        return Image(width: width, height: height, mode: .rgb, pixels: out)
    }

    /// `convert("L")`: ITU-R 601-2 luma in PIL's fixed point, (19595 R + 38470 G + 7471 B +
    /// 0x8000) >> 16; alpha is dropped; CMYK goes through RGB first, as PIL does. `.i16` has no PIL
    /// conversion to L here because Keras never asks for one (it keeps "I;16" in grayscale mode).
    public func convertedToL() -> Image {
        if mode == .l { return self }
        let n = width * height
        var out = [UInt8](repeating: 0, count: n)
        switch mode {
        case .l:
            return self
        case .la:
            for i in 0..<n { out[i] = pixels[2 * i] }
        case .rgb, .rgba:
            let step = mode.channels
            for i in 0..<n {
                out[i] = luma(pixels[step * i], pixels[step * i + 1], pixels[step * i + 2])
            }
        case .cmyk:
            return convertedToRGB().convertedToL()
        case .i16:
            preconditionFailure("convert I;16 to L is not PIL-compatible here; Keras keeps I;16")
        }
        return Image(width: width, height: height, mode: .l, pixels: out)
    }
}

/// PIL's L24 macro: `(rgb[0] * 19595 + rgb[1] * 38470 + rgb[2] * 7471 + 0x8000) >> 16`.
@inline(__always)
func luma(_ r: UInt8, _ g: UInt8, _ b: UInt8) -> UInt8 {
    let sum: Int = Int(r) * 19595 + Int(g) * 38470 + Int(b) * 7471 + 0x8000
    return UInt8(truncatingIfNeeded: sum >> 16)
}

/// PIL's MULDIV255: (a * b + 128 + ((a * b + 128) >> 8)) >> 8.
@inline(__always)
private func mulDiv255(_ a: Int, _ b: Int) -> Int {
    let t = a * b + 128
    return ((t >> 8) + t) >> 8
}

@inline(__always)
private func clip8(_ v: Int) -> UInt8 { UInt8(max(0, min(255, v))) }

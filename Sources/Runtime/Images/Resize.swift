import Foundation
import Graph

// `Interpolation` (Keras's names) is Graph's, shared with UpSampling2D; loading uses nearest and bilinear.

/// PIL's `Image.resize((width, height), NEAREST | BILINEAR)` over the whole image, reproduced
/// from Pillow's src/_imaging.c (_resize), libImaging/Geometry.c and libImaging/Resample.c.
extension Image {
    /// Same size returns the image unchanged (PIL copies). Bilinear is PIL's for L, RGB, CMYK
    /// and I;16; PIL premultiplies LA/RGBA alpha first, which is not reproduced, so those modes
    /// must be converted (as Keras does) before a bilinear resize.
    public func resized(width outWidth: Int, height outHeight: Int, interpolation: Interpolation) -> Image {
        precondition(outWidth > 0 && outHeight > 0, "resize to \(outWidth)x\(outHeight)")
        if outWidth == width && outHeight == height { return self }
        switch (interpolation, mode) {
        case (.nearest, .i16):
            return Image(width: outWidth, height: outHeight,
                         pixels16: nearestPerPixel(pixels16, outWidth, outHeight))
        case (.nearest, _):
            return Image(width: outWidth, height: outHeight, mode: mode,
                         pixels: nearestScaled(pixels, channels: mode.channels, outWidth, outHeight))
        case (.bilinear, .i16):
            return Image(width: outWidth, height: outHeight,
                         pixels16: bilinear16(pixels16, outWidth, outHeight))
        case (.bilinear, .la), (.bilinear, .rgba):
            preconditionFailure("bilinear resize of \(mode.rawValue): PIL premultiplies alpha; convert first")
        case (.bilinear, _):
            return Image(width: outWidth, height: outHeight, mode: mode,
                         pixels: bilinear8(pixels, channels: mode.channels, outWidth, outHeight))
        case (.bicubic, _), (.area, _):
            preconditionFailure("image loading resizes nearest or bilinear, not \(interpolation)")
        }
    }

    // MARK: nearest

    /// 8-bit images: `ImagingScaleAffine`. The source position starts at the centre of the first
    /// output pixel, a/2 with a = in/out, and is *accumulated* (xo += a), as Pillow does; the index
    /// is the truncated position. Indices outside the source (never for a plain resize) are 0.
    private func nearestScaled(_ src: [UInt8], channels: Int, _ outW: Int, _ outH: Int) -> [UInt8] {
        let xs = Self.accumulatedIndices(inSize: width, outSize: outW)
        let ys = Self.accumulatedIndices(inSize: height, outSize: outH)
        var out = [UInt8](repeating: 0, count: outW * outH * channels)
        for (y, yi) in ys.enumerated() where yi >= 0 {
            for (x, xi) in xs.enumerated() where xi >= 0 {
                let from = (yi * width + xi) * channels, to = (y * outW + x) * channels
                for c in 0..<channels { out[to + c] = src[from + c] }
            }
        }
        return out
    }

    /// I;16 images ("special" type in PIL) go through `ImagingGenericTransform` with
    /// `affine_transform` instead: position a * (x + 0.5) computed per pixel, not accumulated.
    private func nearestPerPixel(_ src: [UInt16], _ outW: Int, _ outH: Int) -> [UInt16] {
        let ax = Double(Float(width)) / Double(outW), ay = Double(Float(height)) / Double(outH)
        let xs = (0..<outW).map { Self.coord(ax * (Double($0) + 0.5), width) }
        let ys = (0..<outH).map { Self.coord(ay * (Double($0) + 0.5), height) }
        var out = [UInt16](repeating: 0, count: outW * outH)
        for (y, yi) in ys.enumerated() where yi >= 0 {
            for (x, xi) in xs.enumerated() where xi >= 0 { out[y * outW + x] = src[yi * width + xi] }
        }
        return out
    }

    static func accumulatedIndices(inSize: Int, outSize: Int) -> [Int] {
        // a[0] = (double)(box[2] - box[0]) / xsize, box being C floats; a[2] = box[0] = 0.
        let a = Double(Float(inSize) - Float(0)) / Double(outSize)
        var position = 0.0 + a * 0.5
        var indices = [Int](repeating: -1, count: outSize)
        for i in 0..<outSize {
            indices[i] = coord(position, inSize)
            position += a
        }
        return indices
    }

    /// Pillow's COORD(v): v < 0 ? -1 : (int)v; -1 also for positions past the source.
    private static func coord(_ v: Double, _ size: Int) -> Int {
        let i = v < 0 ? -1 : Int(v)
        return i < size ? i : -1
    }

    // MARK: bilinear

    /// Pillow 13 (`ImagingResampleInner`, PR #9549) runs the vertical pass first when the height
    /// shrinks "significantly more" than the width; older Pillow always ran horizontal first.
    /// The rule below was measured against the venv's Pillow 13.0.0 over a grid of sizes
    /// (PR #9549's own branch had a different test, so it was not copied from source).
    private func verticalFirst(_ outW: Int, _ outH: Int) -> Bool {
        outH < height && 2 * (width - outW) < height - outH
    }

    /// Two separable passes, each only if that dimension changes, each rounded to 8 bits, with
    /// Pillow's 22-bit fixed-point coefficients (`_ImagingResample{Horizontal,Vertical}_8bpc`).
    private func bilinear8(_ src: [UInt8], channels: Int, _ outW: Int, _ outH: Int) -> [UInt8] {
        var values = src, w = width, h = height
        let vertical = { (values: [UInt8], w: Int) in
            resample8(values, outer: 1, axis: self.height, inner: w * channels,
                      fixedPoint(ResampleCoefficients(inSize: self.height, outSize: outH)))
        }
        let horizontal = { (values: [UInt8], h: Int) in
            resample8(values, outer: h, axis: self.width, inner: channels,
                      fixedPoint(ResampleCoefficients(inSize: self.width, outSize: outW)))
        }
        if verticalFirst(outW, outH) {
            values = vertical(values, w); h = outH
            if outW != width { values = horizontal(values, h) }
        } else {
            if outW != width { values = horizontal(values, h); w = outW }
            if outH != height { values = vertical(values, w) }
        }
        return values
    }

    /// I;16: the same coefficients in double precision, rounded half up and clipped to 16 bits
    /// after each pass (`_ImagingResample*_16bpc`).
    private func bilinear16(_ src: [UInt16], _ outW: Int, _ outH: Int) -> [UInt16] {
        var values = src, w = width, h = height
        let vertical = { (values: [UInt16], w: Int) in
            resample16(values, outer: 1, axis: self.height, inner: w,
                       ResampleCoefficients(inSize: self.height, outSize: outH))
        }
        let horizontal = { (values: [UInt16], h: Int) in
            resample16(values, outer: h, axis: self.width, inner: 1,
                       ResampleCoefficients(inSize: self.width, outSize: outW))
        }
        if verticalFirst(outW, outH) {
            values = vertical(values, w); h = outH
            if outW != width { values = horizontal(values, h) }
        } else {
            if outW != width { values = horizontal(values, h); w = outW }
            if outH != height { values = vertical(values, w) }
        }
        return values
    }
}

/// One resampling pass along the middle axis of an (outer, axis, inner) array: the horizontal
/// pass is (rows, width, channels), the vertical one (1, height, width * channels).
private func resample8(_ src: [UInt8], outer: Int, axis: Int, inner: Int, _ k: FixedCoefficients) -> [UInt8] {
    let outAxis = k.bounds.count
    var out = [UInt8](repeating: 0, count: outer * outAxis * inner)
    src.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in
            k.weights.withUnsafeBufferPointer { weights in
                for o in 0..<outer {
                    for a in 0..<outAxis {
                        let (start, count) = k.bounds[a]
                        let w0 = a * k.size, from = (o * axis + start) * inner, to = (o * outAxis + a) * inner
                        for i in 0..<inner {
                            var sum = 1 << 21
                            var at = from + i
                            for t in 0..<count {
                                sum += Int(s[at]) * weights[w0 + t]
                                at += inner
                            }
                            d[to + i] = clip8(sum)
                        }
                    }
                }
            }
        }
    }
    return out
}

/// `resample8` for 16-bit samples with double weights.
private func resample16(_ src: [UInt16], outer: Int, axis: Int, inner: Int, _ k: ResampleCoefficients) -> [UInt16] {
    let outAxis = k.bounds.count
    var out = [UInt16](repeating: 0, count: outer * outAxis * inner)
    src.withUnsafeBufferPointer { s in
        out.withUnsafeMutableBufferPointer { d in
            k.weights.withUnsafeBufferPointer { weights in
                for o in 0..<outer {
                    for a in 0..<outAxis {
                        let (start, count) = k.bounds[a]
                        let w0 = a * k.size, from = (o * axis + start) * inner, to = (o * outAxis + a) * inner
                        for i in 0..<inner {
                            var sum = 0.0
                            var at = from + i
                            for t in 0..<count {
                                sum += Double(s[at]) * weights[w0 + t]
                                at += inner
                            }
                            d[to + i] = clip16(sum)
                        }
                    }
                }
            }
        }
    }
    return out
}

/// `precompute_coeffs` for PIL's bilinear (triangle) filter, support 1, over the whole axis.
struct ResampleCoefficients {
    /// Per output index: first source index and number of taps.
    var bounds: [(start: Int, count: Int)] = []
    /// `size` weights per output index, normalised to sum 1.
    var weights: [Double] = []
    var size: Int

    init(inSize: Int, outSize: Int) {
        let scale = Double(Float(inSize) - Float(0)) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale
        size = Int(support.rounded(.up)) * 2 + 1
        let inverse = 1.0 / filterScale
        weights = [Double](repeating: 0, count: outSize * size)
        for xx in 0..<outSize {
            let center = 0.0 + (Double(xx) + 0.5) * scale
            let xmin = max(Int(center - support + 0.5), 0)
            let count = min(Int(center + support + 0.5), inSize) - xmin
            var total = 0.0
            for x in 0..<count {
                let w = triangle((Double(x + xmin) - center + 0.5) * inverse)
                weights[xx * size + x] = w
                total += w
            }
            if total != 0 {
                for x in 0..<count { weights[xx * size + x] /= total }
            }
            bounds.append((xmin, count))
        }
    }

    private func triangle(_ x: Double) -> Double {
        let a = abs(x)
        return a < 1 ? 1 - a : 0
    }
}

private struct FixedCoefficients {
    var bounds: [(start: Int, count: Int)]
    var weights: [Int]
    var size: Int
}

/// `normalize_coeffs_8bpc`: weights as Int in 22-bit fixed point, rounded half away from zero.
private func fixedPoint(_ k: ResampleCoefficients) -> FixedCoefficients {
    let one = Double(1 << 22)
    let weights = k.weights.map { $0 < 0 ? Int(-0.5 + $0 * one) : Int(0.5 + $0 * one) }
    return FixedCoefficients(bounds: k.bounds, weights: weights, size: k.size)
}

/// Pillow's clip8 on a 22-bit fixed-point sum.
@inline(__always)
private func clip8(_ sum: Int) -> UInt8 { UInt8(max(0, min(255, sum >> 22))) }

/// CLIP16(ROUND_UP(ss)).
@inline(__always)
private func clip16(_ sum: Double) -> UInt16 {
    let rounded = Int(sum >= 0 ? sum + 0.5 : sum - 0.5)
    return UInt16(max(0, min(65535, rounded)))
}

import Graph
// Keras's Resizing (and the resizes inside CenterCrop and tf-keras's RandomCrop) over NHWC:
// tf.image.resize without antialiasing of the window [top, top + height) x [left, left + width)
// of each image (the whole image, or Keras's centred crop to the target's aspect ratio).
// bilinear: the same half-pixel weights as UpSampling2D's (`HalfPixelWeight`, `bilinearRow`).
// nearest: TensorFlow's resize_nearest_neighbor with half_pixel_centers:
//   in = min(floor((i + 0.5) * inSize / outSize), inSize - 1).

/// The crop window Keras takes before resizing with crop_to_aspect_ratio (tf-keras's smart_resize,
/// Keras 3's resize): the largest centred window with the target's aspect ratio, its size and
/// start computed in float32 and truncated, as both do.
public func aspectCropWindow(height: Int, width: Int, targetHeight: Int, targetWidth: Int)
    -> (top: Int, left: Int, height: Int, width: Int) {
    // The product is exact in Double and rounded once to float32, as Keras's int product cast to
    // float32; clamped before the conversion so that no size overflows an Int.
    func side(_ a: Int, _ b: Int, _ c: Int, limit: Int) -> Int {
        let v = Float(Double(a) * Double(b)) / Float(c)
        return max(min(limit, v >= Float(limit) ? limit : Int(v)), 1)
    }
    let cropH = side(width, targetHeight, targetWidth, limit: height)
    let cropW = side(height, targetWidth, targetHeight, limit: width)
    return (Int(Float(height - cropH) / 2), Int(Float(width - cropW) / 2), cropH, cropW)
}

/// The input position nearest-neighbour resizing reads for output position i (half-pixel centres).
func nearestSource(_ i: Int, _ inSize: Int, _ outSize: Int) -> Int {
    let scale = Float(inSize) / Float(outSize)
    return max(0, min(Int(((Float(i) + 0.5) * scale).rounded(.down)), inSize - 1))
}

func resizeImages(input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels c: Int,
                  window: (top: Int, left: Int, height: Int, width: Int), outHeight outH: Int, outWidth outW: Int,
                  interpolation: Interpolation, output: UnsafeMutablePointer<Float>) {
    guard batch > 0, outH > 0, outW > 0, c > 0 else { return }
    let origin = (window.top * width + window.left) * c
    switch interpolation {
    case .nearest:
        let source = nearestSource
        let xs = (0..<outW).map { source($0, window.width, outW) }
        parallelFor(batch * outH, minChunk: max(1, 65_536 / (outW * c))) { _, range in
            for row in range {
                let n = row / outH, y = source(row % outH, window.height, outH)
                let src = input + n * height * width * c + origin + y * width * c
                let dst = output + row * outW * c
                for x in 0..<outW { (dst + x * c).update(from: src + xs[x] * c, count: c) }
            }
        }
    case .bicubic:
        let xTaps = (0..<outW).map { CubicTaps($0, inSize: window.width, outSize: outW) }
        parallelFor(batch * outH, minChunk: max(1, 4096 / (outW * c))) { _, range in
            for row in range {
                let n = row / outH
                let y = CubicTaps(row % outH, inSize: window.height, outSize: outH)
                let image = input + n * height * width * c + origin
                let rows = (0..<4).map { image + y.index[$0] * width * c }
                let dst = output + row * outW * c
                for (x, t) in xTaps.enumerated() {
                    for ch in 0..<c {
                        var columns: (Float, Float, Float, Float) = (0, 0, 0, 0)
                        func column(_ k: Int) -> Float {
                            let at = t.index[k] * c + ch
                            return rows[0][at] * y.weight[0] + rows[1][at] * y.weight[1] + rows[2][at] * y.weight[2]
                                + rows[3][at] * y.weight[3]
                        }
                        columns = (column(0), column(1), column(2), column(3))
                        dst[x * c + ch] = columns.0 * t.weight[0] + columns.1 * t.weight[1] + columns.2 * t.weight[2]
                            + columns.3 * t.weight[3]
                    }
                }
            }
        }
    case .area:
        let xSpans = (0..<outW).map { AreaSpan($0, inSize: window.width, outSize: outW) }
        let scale = areaScale(window, outH, outW)
        parallelFor(batch * outH, minChunk: max(1, 4096 / (outW * c))) { _, range in
            for row in range {
                let n = row / outH
                let y = AreaSpan(row % outH, inSize: window.height, outSize: outH)
                let image = input + n * height * width * c + origin
                let dst = output + row * outW * c
                for (x, span) in xSpans.enumerated() {
                    for ch in 0..<c {
                        var sum: Float = 0
                        for (iy, wy) in zip(y.indices, y.weights) {
                            let line = image + iy * width * c + ch
                            var sumY: Float = 0
                            for (ix, wx) in zip(span.indices, span.weights) {
                                sumY += wx == 1 ? line[ix * c] : line[ix * c] * wx
                            }
                            sum += sumY * wy
                        }
                        dst[x * c + ch] = sum * scale
                    }
                }
            }
        }
    case .bilinear:
        withUnsafeTemporaryAllocation(of: HalfPixelWeight.self, capacity: outW) { xw in
            for x in 0..<outW { xw[x] = HalfPixelWeight(x, inSize: window.width, outSize: outW) }
            let xWeights = UnsafePointer(xw.baseAddress!)
            parallelFor(batch * outH, minChunk: max(1, 16_384 / (outW * c))) { _, range in
                for row in range {
                    let n = row / outH
                    let yw = HalfPixelWeight(row % outH, inSize: window.height, outSize: outH)
                    let image = input + n * height * width * c + origin
                    bilinearRow(image + yw.lower * width * c, image + yw.upper * width * c, yw.lerp,
                                xWeights, outW, c, output + row * outW * c)
                }
            }
        }
    }
}

/// The four taps of TensorFlow's half-pixel Keys cubic for output position i: input indices
/// (clamped to the image) and weights (0 for taps outside it, renormalised to sum 1).
struct CubicTaps {
    var index: [Int]
    var weight: [Float]

    /// Keys's cubic (a = -0.5) at 1025 fractions: [2k] the weight of a tap at distance k/1024,
    /// [2k + 1] at distance 1 + k/1024 (computed in double and stored in float, as TensorFlow).
    static let table: [Float] = (0...1024).flatMap { i -> [Float] in
        let a = -0.5
        var x = Double(Float(Double(i) / 1024))
        let near = Float(((a + 2) * x - (a + 3)) * x * x + 1)
        x = Double(Float(x + 1))
        let far = Float(((a * x - 5 * a) * x + 8 * a) * x - 4 * a)
        return [near, far]
    }

    init(_ i: Int, inSize: Int, outSize: Int) {
        let scale = Float(inSize) / Float(outSize)
        let position = (Float(i) + 0.5) * scale - 0.5
        let floor = position.rounded(.down)
        let base = Int(floor)
        let offset = Int(((position - floor) * 1024).rounded(.toNearestOrEven))
        let t = CubicTaps.table
        let raw = [t[offset * 2 + 1], t[offset * 2], t[(1024 - offset) * 2], t[(1024 - offset) * 2 + 1]]
        let taps = (0..<4).map { min(max(base - 1 + $0, 0), inSize - 1) }
        var w = (0..<4).map { taps[$0] == base - 1 + $0 ? raw[$0] : 0 }
        let sum = w[0] + w[1] + w[2] + w[3]
        if abs(sum) >= 1000 * Float.leastNormalMagnitude {
            let inverse = 1 / sum
            w = w.map { $0 * inverse }
        }
        index = taps
        weight = w
    }
}

/// The input pixels output position i of an area resize covers, with the fraction of each
/// covered (TensorFlow's ResizeArea in float: [i * scale, (i + 1) * scale), indices clamped).
struct AreaSpan {
    var indices: [Int]
    var weights: [Float]

    init(_ i: Int, inSize: Int, outSize: Int) {
        let scale = Float(inSize) / Float(outSize)
        let lo = Float(i) * scale, hi = Float(i + 1) * scale
        let start = Int(lo.rounded(.down)), end = Int(hi.rounded(.up))
        func fraction(_ v: Int) -> Float {
            let f = Float(v)
            return f < lo ? (f + 1 > hi ? scale : f + 1 - lo) : (f + 1 > hi ? hi - f : 1)
        }
        // TensorFlow weighs the first pixel and the last; when they are one pixel, only the first.
        var idx = [start], w = [fraction(start)]
        if start + 1 != end {
            for v in (start + 1)..<(end - 1) { idx.append(v); w.append(1) }
            idx.append(end - 1); w.append(fraction(end - 1))
        }
        indices = idx.map { min(max($0, 0), inSize - 1) }
        weights = w
    }
}

/// ResizeArea's normalisation, 1 / (height scale * width scale): the product in float, its
/// reciprocal in double rounded to float, as TensorFlow computes it.
func areaScale(_ window: (top: Int, left: Int, height: Int, width: Int), _ outH: Int, _ outW: Int) -> Float {
    Float(1.0 / Double(Float(window.height) / Float(outH) * (Float(window.width) / Float(outW))))
}

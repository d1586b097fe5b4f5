import Graph
// UpSampling2D over NHWC: [N, H, W, C] -> [N, H*sizeH, W*sizeW, C].
// nearest: each input pixel repeated sizeH x sizeW times.
// bilinear: TensorFlow's resize_bilinear with half_pixel_centers=True, which is what Keras's
//   UpSampling2D(interpolation="bilinear") runs (keras.backend.resize_images ->
//   tf.image.resize(method=BILINEAR) -> gen_image_ops.resize_bilinear(half_pixel_centers=True)).
//   Source coordinate of output index i: in = (i + 0.5) * (inSize / outSize) - 0.5;
//   lower = max(floor(in), 0), upper = min(ceil(in), inSize - 1), lerp = in - floor(in);
//   top = tl + (tr - tl) * xLerp, bottom = bl + (br - bl) * xLerp, out = top + (bottom - top) * yLerp.

// `Interpolation` is Graph's, shared with the layer specs; UpSampling2D's are nearest and bilinear.

public func upsampling2d(input: UnsafePointer<Float>, batch: Int, height: Int, width: Int, channels: Int,
                         sizeH: Int, sizeW: Int, interpolation: Interpolation,
                         output: UnsafeMutablePointer<Float>) {
    let outH = height * sizeH, outW = width * sizeW, c = channels
    guard batch > 0, outH > 0, outW > 0, c > 0 else { return }
    switch interpolation {
    case .nearest:
        parallelFor(batch * outH, minChunk: max(1, 65_536 / (outW * c))) { _, range in
            for row in range {
                let n = row / outH, y = row % outH
                let src = input + (n * height + y / sizeH) * width * c
                var dst = output + row * outW * c
                for x in 0..<width {
                    for _ in 0..<sizeW { dst.update(from: src + x * c, count: c); dst += c }
                }
            }
        }
    case .bilinear:
        withUnsafeTemporaryAllocation(of: HalfPixelWeight.self, capacity: outW) { xw in
            for x in 0..<outW { xw[x] = HalfPixelWeight(x, inSize: width, outSize: outW) }
            let xWeights = UnsafePointer(xw.baseAddress!)
            parallelFor(batch * outH, minChunk: max(1, 16_384 / (outW * c))) { _, range in
                for row in range {
                    let n = row / outH
                    let yw = HalfPixelWeight(row % outH, inSize: height, outSize: outH)
                    let image = input + n * height * width * c
                    bilinearRow(image + yw.lower * width * c, image + yw.upper * width * c, yw.lerp,
                                xWeights, outW, c, output + row * outW * c)
                }
            }
        }
    case .bicubic, .area:
        preconditionFailure("UpSampling2D interpolates nearest or bilinear")
    }
}

/// TensorFlow's per-index interpolation weights (compute_interpolation_weights, half-pixel).
struct HalfPixelWeight {
    var lower: Int, upper: Int, lerp: Float
    init(_ i: Int, inSize: Int, outSize: Int) {
        let scale = Float(inSize) / Float(outSize)
        let src = (Float(i) + 0.5) * scale - 0.5
        let f = src.rounded(.down)
        lower = max(Int(f), 0)
        upper = min(Int(src.rounded(.up)), inSize - 1)
        lerp = src - f
    }
}

@inline(__always)
func bilinearRow(_ top: UnsafePointer<Float>, _ bottom: UnsafePointer<Float>, _ yLerp: Float,
                         _ xw: UnsafePointer<HalfPixelWeight>, _ outW: Int, _ c: Int,
                         _ out: UnsafeMutablePointer<Float>) {
    let yl = Vec(repeating: yLerp)
    for x in 0..<outW {
        let w = xw[x]
        let xl = Vec(repeating: w.lerp)
        let tl = top + w.lower * c, tr = top + w.upper * c
        let bl = bottom + w.lower * c, br = bottom + w.upper * c
        let dst = out + x * c
        var j = 0
        while j < c {
            let n = min(8, c - j)
            @inline(__always) func ld(_ p: UnsafePointer<Float>) -> Vec { n == 8 ? load(p + j) : loadPartial(p + j, n) }
            let t = ld(tl), b = ld(bl)
            let upper = t + (ld(tr) - t) * xl
            let lower = b + (ld(br) - b) * xl
            let v = upper + (lower - upper) * yl
            if n == 8 { store(v, dst + j) } else { storePartial(v, dst + j, n) }
            j += 8
        }
    }
}

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

// TensorFlow's ImageProjectiveTransformV3 on one image, as both Kerases' augmentation layers call it
// (RandomRotation, RandomZoom, RandomTranslation; tensorflow/core/kernels/image/image_ops.h,
// ProjectiveGenerator and MapCoordinate), in float32 as TensorFlow computes it.
//
// Layout: images are HWC float32, row-major. The transform [a0, a1, a2, b0, b1, b2, c0, c1] maps
// an output pixel (x = column, y = row, pixel centres at integers) to the input point
//     x' = (a0 x + a1 y + a2) / k,  y' = (b0 x + b1 y + b2) / k,  k = c0 x + c1 y + 1.
// Each coordinate is then mapped into the image by the fill mode and clamped to [0, n - 1]
// (except `constant`, which keeps it), and sampled: nearest rounds half away from zero; bilinear
// blends the four taps around it, each tap outside the image reading `fill_value`.
//
// Not ImageDataGenerator's scipy resampling (AffineResample.swift): scipy decides `constant` per
// sample point and mirrors the taps, TensorFlow per tap; their `wrap` differs too.
import Graph

/// The eight numbers TensorFlow's transform takes, for one image.
struct ProjectiveMatrix: Equatable {
    var a0, a1, a2, b0, b1, b2, c0, c1: Float

    static let identity = ProjectiveMatrix(a0: 1, a1: 0, a2: 0, b0: 0, b1: 1, b2: 0, c0: 0, c1: 0)
}

/// TensorFlow's MapCoordinate for `mode` on a length-`len` axis (float32; its integer casts
/// truncate towards zero as `Int(_:)` does). Its reflect keeps TensorFlow's test `in < sz2` (always
/// true for a negative coordinate), so a point far left is folded by its own period count first.
@inline(__always)
func tfMapCoordinate(_ out: Float, _ len: Int, _ mode: TransformFill) -> Float {
    var v = out
    switch mode {
    case .constant:
        return v
    case .nearest:
        return min(max(v, 0), Float(len - 1))
    case .reflect:
        if v < 0 {
            if len <= 1 { v = 0 } else {
                let sz2 = 2 * len
                v = Float(sz2 * Int(-v / Float(sz2))) + v
                v = v < Float(-len) ? v + Float(sz2) : -v - 1
            }
        } else if v > Float(len - 1) {
            if len <= 1 { v = 0 } else {
                let sz2 = 2 * len
                v -= Float(sz2 * Int(v / Float(sz2)))
                if v >= Float(len) { v = Float(sz2) - v - 1 }
            }
        }
    case .wrap:
        if v < 0 {
            if len <= 1 { v = 0 } else {
                let sz = len - 1
                v += Float(len * (Int(-v / Float(sz)) + 1))
            }
        } else if v > Float(len - 1) {
            if len <= 1 { v = 0 } else {
                let sz = len - 1
                v -= Float(len * Int(v / Float(sz)))
            }
        }
    }
    return min(max(v, 0), Float(len - 1))
}

/// One image of ImageProjectiveTransformV3 with the output the input's size. `src` and `dst` must
/// not overlap.
func projectiveTransform(_ src: UnsafePointer<Float>, height: Int, width: Int, channels c: Int,
                         _ m: ProjectiveMatrix, interpolation: Interpolation, fill: TransformFill, fillValue: Float,
                         into dst: UnsafeMutablePointer<Float>) {
    precondition(interpolation.isLinear, "ImageProjectiveTransformV3 samples nearest or bilinear")
    /// A pixel's channels, or nil outside the image (then every channel reads fillValue).
    @inline(__always) func pixel(_ y: Int, _ x: Int) -> UnsafePointer<Float>? {
        y >= 0 && y < height && x >= 0 && x < width ? src + (y * width + x) * c : nil
    }
    for oy in 0..<height {
        for ox in 0..<width {
            let o = dst + (oy * width + ox) * c
            let fx = Float(ox), fy = Float(oy)
            let k = m.c0 * fx + m.c1 * fy + 1
            if k == 0 {
                for ch in 0..<c { o[ch] = fillValue }
                continue
            }
            let inX = (m.a0 * fx + m.a1 * fy + m.a2) / k
            let inY = (m.b0 * fx + m.b1 * fy + m.b2) / k
            let x = tfMapCoordinate(inX, width, fill), y = tfMapCoordinate(inY, height, fill)
            if interpolation == .nearest {
                // Int(Float) traps past Int's range: a point that far is outside either way.
                let ry = y.rounded(), rx = x.rounded()
                let p = abs(ry) < 1e9 && abs(rx) < 1e9 ? pixel(Int(ry), Int(rx)) : nil
                for ch in 0..<c { o[ch] = p.map { $0[ch] } ?? fillValue }
                continue
            }
            let yFloor = y.rounded(.down), xFloor = x.rounded(.down)
            let yCeil = yFloor + 1, xCeil = xFloor + 1
            guard abs(yFloor) < 1e9 && abs(xFloor) < 1e9 else {
                for ch in 0..<c { o[ch] = fillValue }
                continue
            }
            let iy = Int(yFloor), ix = Int(xFloor)
            let wx0 = xCeil - x, wx1 = x - xFloor, wy0 = yCeil - y, wy1 = y - yFloor
            if iy >= 0 && iy + 1 < height && ix >= 0 && ix + 1 < width {
                // All four taps inside (most pixels): no fill checks.
                let q00 = src + (iy * width + ix) * c, q10 = q00 + width * c
                for ch in 0..<c {
                    let top = wx0 * q00[ch] + wx1 * q00[c + ch]
                    let bottom = wx0 * q10[ch] + wx1 * q10[c + ch]
                    o[ch] = wy0 * top + wy1 * bottom
                }
                continue
            }
            let p00 = pixel(iy, ix), p01 = pixel(iy, ix + 1), p10 = pixel(iy + 1, ix), p11 = pixel(iy + 1, ix + 1)
            for ch in 0..<c {
                let top = wx0 * (p00?[ch] ?? fillValue) + wx1 * (p01?[ch] ?? fillValue)
                let bottom = wx0 * (p10?[ch] ?? fillValue) + wx1 * (p11?[ch] ?? fillValue)
                o[ch] = wy0 * top + wy1 * bottom
            }
        }
    }
}

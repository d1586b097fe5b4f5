// Keras's `apply_affine_transform` (tf-keras 2.21): the transform matrix built from theta, tx, ty,
// shear, zx, zy about the image centre, then scipy.ndimage.affine_transform(channel, matrix,
// offset, order=1, mode=fill_mode, cval=cval) on each channel (scipy 1.17,
// ndimage/src/ni_interpolation.c, NI_GeometricTransform + map_coordinate; ni_splines.c for the
// order-1 weights).
//
// Layout: images are HWC float32, row-major. Coordinates are scipy's: index space, pixel centres
// at integers, axis 0 = row, axis 1 = column. For output pixel (r, c) the input is sampled at
//     row = r * m00 + c * m01 + offset0,   col = r * m10 + c * m11 + offset1
// -- accumulated in that order, in Double, as scipy does, so the sample points are the same doubles.
import CKernels
import Foundation

/// The matrix and offset Keras hands to scipy (already in (row, column) order).
public struct AffineMatrix: Sendable, Equatable {
    public var m00, m01, m10, m11: Double
    public var offset0, offset1: Double

    public init(m00: Double, m01: Double, m10: Double, m11: Double, offset0: Double, offset1: Double) {
        (self.m00, self.m01, self.m10, self.m11) = (m00, m01, m10, m11)
        (self.offset0, self.offset1) = (offset0, offset1)
    }

    /// What `apply_affine_transform` computes for an image of `height` x `width`, or nil when it
    /// would return the image untouched (every parameter at its identity value).
    ///
    /// Keras composes rotation . shift . shear . zoom in its (x, y) = (axis 0, axis 1) frame, moves
    /// the origin with `transform_matrix_offset_center(m, h, w)` (o_x = h/2 - 0.5 on axis 0,
    /// o_y = w/2 - 0.5 on axis 1), then, because col_axis > row_axis, swaps both rows and columns
    /// of the matrix. The result: tx moves columns, ty moves rows, and on a non-square image the
    /// centre used is (w/2 - 0.5, h/2 - 0.5) in (row, col). Reproduced as is.
    public static func keras(_ p: TransformParameters, height: Int, width: Int) -> AffineMatrix? {
        var m: Matrix3? = nil
        func compose(_ next: Matrix3) { m = m.map { $0 * next } ?? next }
        if p.theta != 0 {
            let t = p.theta * (Double.pi / 180)  // np.deg2rad: x * (pi / 180)
            compose(Matrix3([[cos(t), -sin(t), 0], [sin(t), cos(t), 0], [0, 0, 1]]))
        }
        if p.tx != 0 || p.ty != 0 {
            compose(Matrix3([[1, 0, p.tx], [0, 1, p.ty], [0, 0, 1]]))
        }
        if p.shear != 0 {
            let s = p.shear * (Double.pi / 180)
            compose(Matrix3([[1, -sin(s), 0], [0, cos(s), 0], [0, 0, 1]]))
        }
        if p.zx != 1 || p.zy != 1 {
            compose(Matrix3([[p.zx, 0, 0], [0, p.zy, 0], [0, 0, 1]]))
        }
        guard let transform = m else { return nil }
        let ox = Double(height) / 2 - 0.5, oy = Double(width) / 2 - 0.5
        let centred = (Matrix3([[1, 0, ox], [0, 1, oy], [0, 0, 1]]) * transform)
            * Matrix3([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]])
        let a = centred.a
        return AffineMatrix(m00: a[1][1], m01: a[1][0], m10: a[0][1], m11: a[0][0],
                            offset0: a[1][2], offset1: a[0][2])
    }
}

/// A 3x3 Double matrix, multiplied as np.dot does (sum over k = 0, 1, 2 in order).
struct Matrix3 {
    var a: [[Double]]
    init(_ a: [[Double]]) { self.a = a }

    static func * (l: Matrix3, r: Matrix3) -> Matrix3 {
        var out = [[Double]](repeating: [0, 0, 0], count: 3)
        for i in 0..<3 {
            for j in 0..<3 {
                out[i][j] = l.a[i][0] * r.a[0][j] + l.a[i][1] * r.a[1][j] + l.a[i][2] * r.a[2][j]
            }
        }
        return Matrix3(out)
    }
}

/// The two input samples along one axis and their order-1 spline weights, as scipy computes them;
/// `constant` when the point is outside and the mode is `constant` (the value is then cval).
@usableFromInline
struct AxisTaps {
    var i0: Int
    var i1: Int
    var w0: Double
    var w1: Double
    var constant: Bool

    @inline(__always)
    init(_ coordinate: Double, length: Int, mode: FillMode) {
        // scipy maps the sample point into range for every mode but nearest (whose taps are
        // clamped below instead); constant maps outside points to -1.
        var cc = coordinate
        if mode != .nearest { cc = mapCoordinate(cc, length, mode) }
        guard cc > -1.0 || mode == .nearest else {
            (i0, i1, w0, w1, constant) = (0, 0, 0, 0, true)
            return
        }
        // Keep (npy_intp)floor(cc) defined for absurd zooms in nearest mode; any start this far
        // out clamps to the same edge pixel.
        cc = min(max(cc, -1e15), 1e15)
        let start = floorInt(cc)
        let f = Double(start)
        var a = start, b = start + 1
        if start < 0 || start + 1 >= length {
            // Taps outside the image: scipy's "spline mode" -- mirror for constant and wrap,
            // the mode itself for nearest and reflect.
            let tapMode: TapMode = (mode == .nearest) ? .nearest : (mode == .reflect ? .reflect : .mirror)
            a = mapTap(a, length, tapMode)
            b = mapTap(b, length, tapMode)
        }
        // get_spline_interpolation_weights, order 1: w0 = 1 - x, the last weight is 1 - (the others).
        let x = cc - f
        let w0 = 1.0 - x
        (i0, i1, self.w0, w1, constant) = (a, b, w0, 1.0 - w0, false)
    }
}

/// scipy's map_coordinate for the modes Keras uses (NI_EXTEND_REFLECT, _WRAP, _CONSTANT, _NEAREST),
/// on a continuous sample point. `(npy_intp)` casts truncate towards zero, as `Int(_:)` does.
@inline(__always)
func mapCoordinate(_ value: Double, _ length: Int, _ mode: FillMode) -> Double {
    var v = value
    let len = Double(length)
    if v < 0 {
        switch mode {
        case .reflect:
            if length <= 1 { return 0 }
            let sz2 = 2 * len
            if v < -sz2 { v = sz2 * Double(Int(-v / sz2)) + v }
            // scipy's -1e-15 guard keeps (-v - 1) from landing on exactly -1.
            v = v < -len ? v + sz2 : (v > -1e-15 ? 1e-15 : -v) - 1
        case .wrap:
            if length <= 1 { return 0 }
            let sz = len - 1
            v += sz * Double(Int(-v / sz) + 1)
        case .nearest:
            v = 0
        case .constant:
            v = -1
        }
    } else if v > len - 1 {
        switch mode {
        case .reflect:
            if length <= 1 { return 0 }
            let sz2 = 2 * len
            // Below sz2, v / sz2 rounds below 1 and its truncation is 0: the division (most of
            // this mapping's time, for every point past the last row or column) changes nothing.
            if v >= sz2 { v -= sz2 * Double(Int(v / sz2)) }
            if v >= len { v = sz2 - v - 1 }
        case .wrap:
            if length <= 1 { return 0 }
            let sz = len - 1
            v -= sz * Double(Int(v / sz))
        case .nearest:
            v = len - 1
        case .constant:
            v = -1
        }
    }
    return v
}

enum TapMode { case mirror, reflect, nearest }

/// floor(v) as an Int, for |v| < 2^53 (exact: truncate, then step down for negative fractions).
@inline(__always)
func floorInt(_ v: Double) -> Int {
    let t = Int(v)
    return Double(t) > v ? t - 1 : t
}

/// scipy maps an out-of-range integer tap through map_coordinate with the spline mode and
/// truncates the result.
@inline(__always)
func mapTap(_ index: Int, _ length: Int, _ mode: TapMode) -> Int {
    if index >= 0 && index < length { return index }
    if length <= 1 { return 0 }
    switch mode {
    case .nearest:
        return index < 0 ? 0 : length - 1
    case .mirror:
        let sz2 = 2 * length - 2
        if index < 0 {
            var v = sz2 * (-index / sz2) + index
            v = v <= 1 - length ? v + sz2 : -v
            return v
        }
        var v = index - sz2 * (index / sz2)
        if v >= length { v = sz2 - v }
        return v
    case .reflect:
        let sz2 = 2 * length
        if index < 0 {
            var v = index
            if v < -sz2 { v = sz2 * (-v / sz2) + v }
            return v < -length ? v + sz2 : -v - 1
        }
        var v = index < sz2 ? index : index - sz2 * (index / sz2)
        if v >= length { v = sz2 - v - 1 }
        return v
    }
}

/// One RGB pixel's bilinear sum from its four taps: lanes 0-2 are `Float(p00[k] * wy0 * wx0 +
/// p01[k] * wy0 * wx1 + p10[k] * wy1 * wx0 + p11[k] * wy1 * wx1)` summed left to right in
/// Double, as scipy does. Reads a fourth Float after each tap: no tap may be the image's last pixel.
@inline(__always)
func bilinearRGB(_ p00: UnsafePointer<Float>, _ p01: UnsafePointer<Float>, _ p10: UnsafePointer<Float>,
                 _ p11: UnsafePointer<Float>, wy0: Double, wy1: Double, wx0: Double, wx1: Double) -> SIMD4<Float> {
    func load(_ p: UnsafePointer<Float>) -> SIMD4<Double> {
        SIMD4<Double>(UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self))
    }
    var t = load(p00) * wy0 * wx0
    t += load(p01) * wy0 * wx1
    t += load(p10) * wy1 * wx0
    t += load(p11) * wy1 * wx1
    return SIMD4<Float>(t)
}

/// scipy.ndimage.affine_transform(order=1) of every channel of an HWC image, written into `dest`
/// (same shape), with the flips of `apply_transform` folded into where each pixel is written.
/// Bilinear sums run in Double in scipy's tap order; results are rounded to Float once.
func affineResample(_ src: UnsafePointer<Float>, height: Int, width: Int, channels: Int,
                    matrix: AffineMatrix, mode: FillMode, cval: Double,
                    flipHorizontal: Bool, flipVertical: Bool, into dst: UnsafeMutablePointer<Float>) {
    let c = channels
    let hLimit = Double(height - 1), wLimit = Double(width - 1)
    let fill = Float(cval)
    let m = matrix
    let last = src + (height * width - 1) * c
    // The AVX-512 rows (CKernels/affine_avx512.c) for the modes they cover; each row they decline
    // (a sample point where their shortcuts do not hold) is computed by the loop below.
    let vectorRows = KernelISA.avx512 && (mode == .reflect || mode == .nearest) && (c == 1 || c == 3)
        && height >= 2 && width >= 2 && height * width * c < Int(Int32.max)
    let coefficients = [m.m00, m.m01, m.m10, m.m11, m.offset0, m.offset1]
    for r in 0..<height {
        let outRow = flipVertical ? height - 1 - r : r
        if vectorRows && ck_affine_row_avx512(src, height, width, c, coefficients, mode == .reflect ? 1 : 0, r,
                                              flipHorizontal ? 1 : 0, dst + outRow * width * c) != 0 {
            continue
        }
        let rowPart0 = Double(r) * m.m00, rowPart1 = Double(r) * m.m10
        for q in 0..<width {
            let outCol = flipHorizontal ? width - 1 - q : q
            let o = dst + (outRow * width + outCol) * c
            let y = (rowPart0 + Double(q) * m.m01) + m.offset0
            let x = (rowPart1 + Double(q) * m.m11) + m.offset1
            if y >= 0 && y < hLimit && x >= 0 && x < wLimit {
                // Inside: no boundary mapping in any mode; taps are (fy, fy+1) x (fx, fx+1).
                // Non-negative here, so truncation is floor (and needs no libm call).
                let iy = Int(y), ix = Int(x)
                let wy0 = 1.0 - (y - Double(iy)), wx0 = 1.0 - (x - Double(ix))
                let wy1 = 1.0 - wy0, wx1 = 1.0 - wx0
                let p00 = src + (iy * width + ix) * c
                let p10 = p00 + width * c
                if c == 3 && !(iy + 2 == height && ix + 2 == width) {
                    // RGB: the three channels of each tap as one 4-lane vector (the fourth lane,
                    // the next pixel's red, is computed and dropped; the image's last pixel has
                    // no next one, hence the condition). Lane for lane the same Double
                    // operations in the same order as the loop below, so the same results.
                    let t = bilinearRGB(p00, p00 + 3, p10, p10 + 3, wy0: wy0, wy1: wy1, wx0: wx0, wx1: wx1)
                    o[0] = t[0]
                    o[1] = t[1]
                    o[2] = t[2]
                    continue
                }
                for k in 0..<c {
                    var t = Double(p00[k]) * wy0 * wx0
                    t += Double(p00[c + k]) * wy0 * wx1
                    t += Double(p10[k]) * wy1 * wx0
                    t += Double(p10[c + k]) * wy1 * wx1
                    o[k] = Float(t)
                }
                continue
            }
            let ty = AxisTaps(y, length: height, mode: mode)
            let tx = ty.constant ? ty : AxisTaps(x, length: width, mode: mode)
            if ty.constant || tx.constant {
                for k in 0..<c { o[k] = fill }
                continue
            }
            let p00 = src + (ty.i0 * width + tx.i0) * c, p01 = src + (ty.i0 * width + tx.i1) * c
            let p10 = src + (ty.i1 * width + tx.i0) * c, p11 = src + (ty.i1 * width + tx.i1) * c
            if c == 3 && p00 != last && p01 != last && p10 != last && p11 != last {
                let t = bilinearRGB(p00, p01, p10, p11, wy0: ty.w0, wy1: ty.w1, wx0: tx.w0, wx1: tx.w1)
                o[0] = t[0]
                o[1] = t[1]
                o[2] = t[2]
                continue
            }
            for k in 0..<c {
                var t = Double(p00[k]) * ty.w0 * tx.w0
                t += Double(p01[k]) * ty.w0 * tx.w1
                t += Double(p10[k]) * ty.w1 * tx.w0
                t += Double(p11[k]) * ty.w1 * tx.w1
                o[k] = Float(t)
            }
        }
    }
}

// Backward of the operations that only move data (Ops/Layout.swift); shapes include the batch
// axis, images NHWC. Each is the adjoint of its forward: padding <-> cropping, repetition <->
// summation, a permutation <-> its inverse, concatenation <-> splitting, reshape <-> identity.
// Every function overwrites its gradient output, or adds into it when `accumulate`.
import Graph

/// Reshape, Flatten (and any layer whose gradient passes unchanged): dInput = dOutput.
public func identityBackward(dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>, count: Int,
                             accumulate: Bool) {
    parallelForStatic(count, minChunk: 1 << 16) { _, r in
        if accumulate { addInto(dInput + r.lowerBound, dOutput + r.lowerBound, r.count) }
        else { (dInput + r.lowerBound).update(from: dOutput + r.lowerBound, count: r.count) }
    }
}

/// Copies (or adds) a window: for each (image, row) of `rows`, `rowCount` floats.
@inline(__always)
private func moveRows(batch: Int, rows: Int, rowCount: Int, accumulate: Bool,
                      src: (Int, Int) -> UnsafePointer<Float>, dst: (Int, Int) -> UnsafeMutablePointer<Float>) {
    parallelForStatic(batch * rows, minChunk: max(1, 16_384 / max(1, rowCount))) { _, range in
        for i in range {
            let b = i / rows, r = i % rows
            if accumulate { addInto(dst(b, r), src(b, r), rowCount) } else { dst(b, r).update(from: src(b, r), count: rowCount) }
        }
    }
}

/// ZeroPadding2D backward: dInput [N, H, W, C] is the window of dOutput at (top, left).
public func zeroPad2dBackward(dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                              input s: [Int], output o: [Int], top: Int, left: Int, accumulate: Bool) {
    moveRows(batch: s[0], rows: s[1], rowCount: s[2] * s[3], accumulate: accumulate,
             src: { b, r in dOutput + ((b * o[1] + r + top) * o[2] + left) * o[3] },
             dst: { b, r in dInput + (b * s[1] + r) * s[2] * s[3] })
}

/// Cropping2D backward: dOutput placed at (top, left) in a zero dInput of the input's shape.
public func crop2dBackward(dOutput: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>,
                           input s: [Int], output o: [Int], top: Int, left: Int, accumulate: Bool) {
    if !accumulate { zeroFill(dInput, s.reduce(1, *)) }
    moveRows(batch: o[0], rows: o[1], rowCount: o[2] * o[3], accumulate: true,
             src: { b, r in dOutput + (b * o[1] + r) * o[2] * o[3] },
             dst: { b, r in dInput + ((b * s[1] + r + top) * s[2] + left) * s[3] })
}

/// UpSampling2D backward. nearest: each input pixel sums its factorH x factorW block. bilinear:
/// each output pixel hands its gradient back to its four source pixels with the forward's weights
/// (half-pixel centres, clamped edges), images in parallel.
public func upsample2dBackward(dOutput dy: UnsafePointer<Float>, dInput dx: UnsafeMutablePointer<Float>,
                               input s: [Int], factorH: Int, factorW: Int, interpolation: Interpolation,
                               accumulate: Bool) {
    let (n, h, w, c) = (s[0], s[1], s[2], s[3])
    let oh = h * factorH, ow = w * factorW
    switch interpolation {
    case .nearest:
        parallelForStatic(n * h, minChunk: max(1, 4096 / max(1, w * c * factorH * factorW))) { _, rows in
            for row in rows {
                let b = row / h, y = row % h
                for x in 0..<w {
                    let dst = dx + (row * w + x) * c
                    if !accumulate { dst.update(repeating: 0, count: c) }
                    for i in 0..<factorH {
                        for j in 0..<factorW {
                            addInto(dst, dy + ((b * oh + y * factorH + i) * ow + x * factorW + j) * c, c)
                        }
                    }
                }
            }
        }
    case .bilinear:
        if !accumulate { zeroFill(dx, n * h * w * c) }
        parallelForStatic(n) { _, images in
            for b in images {
                for oy in 0..<oh {
                    let fy = max(0, (Float(oy) + 0.5) / Float(factorH) - 0.5)
                    let y0 = min(Int(fy), h - 1), y1 = min(y0 + 1, h - 1), wy = fy - Float(y0)
                    for ox in 0..<ow {
                        let fx = max(0, (Float(ox) + 0.5) / Float(factorW) - 0.5)
                        let x0 = min(Int(fx), w - 1), x1 = min(x0 + 1, w - 1), wx = fx - Float(x0)
                        let g = dy + ((b * oh + oy) * ow + ox) * c
                        // top = p00 + (p01 - p00) wx; out = top + (bottom - top) wy
                        let w00 = (1 - wx) * (1 - wy), w01 = wx * (1 - wy), w10 = (1 - wx) * wy, w11 = wx * wy
                        @inline(__always) func give(_ yy: Int, _ xx: Int, _ wt: Float) {
                            let p = dx + ((b * h + yy) * w + xx) * c
                            for ch in 0..<c { p[ch] += g[ch] * wt }
                        }
                        give(y0, x0, w00); give(y0, x1, w01); give(y1, x0, w10); give(y1, x1, w11)
                    }
                }
            }
        }
    case .bicubic, .area:
        preconditionFailure("UpSampling2D interpolates nearest or bilinear")
    }
}

/// Transpose (Permute) backward: dInput = dOutput transposed by the inverse permutation.
/// `shape` is the forward input's shape, `permutation` the forward's.
public func transposeBackward(dOutput dy: UnsafePointer<Float>, dInput dx: UnsafeMutablePointer<Float>,
                              shape: [Int], permutation: [Int], accumulate: Bool) {
    let rank = shape.count
    var inStrides = Array(repeating: 1, count: rank)
    for d in stride(from: rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * shape[d + 1] }
    let outShape = permutation.map { shape[$0] }
    let scattered = permutation.map { inStrides[$0] }    // dx offset step per output axis
    var index = Array(repeating: 0, count: rank)
    var offset = 0
    for j in 0..<shape.reduce(1, *) {
        put(dy[j], dx + offset, accumulate: accumulate)
        var d = rank - 1
        while d >= 0 {
            index[d] += 1
            offset += scattered[d]
            if index[d] < outShape[d] { break }
            offset -= scattered[d] * outShape[d]
            index[d] = 0
            d -= 1
        }
    }
}

/// Concatenate backward: splits dOutput along `axis` (0-based, batch included) into each input's
/// gradient; nil entries are skipped.
public func concatenateBackward(dOutput dy: UnsafePointer<Float>, dInputs: [UnsafeMutablePointer<Float>?],
                                shapes: [[Int]], axis: Int, accumulate: Bool) {
    let outer = shapes[0][..<axis].reduce(1, *)
    let inner = shapes[0][(axis + 1)...].reduce(1, *)
    let total = shapes.map { $0[axis] }.reduce(0, +) * inner
    var at = 0
    for (dx, s) in zip(dInputs, shapes) {
        let chunk = s[axis] * inner
        if let dx {
            let start = at
            moveRows(batch: outer, rows: 1, rowCount: chunk, accumulate: accumulate,
                     src: { o, _ in dy + o * total + start }, dst: { o, _ in dx + o * chunk })
        }
        at += chunk
    }
}

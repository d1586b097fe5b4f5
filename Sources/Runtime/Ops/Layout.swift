// Operations that only move data: padding, cropping, upsampling, transposition, concatenation.
// Shapes include the batch axis; images are NHWC.
import Graph

/// ZeroPadding2D: y [N, H+t+b, W+l+r, C] with x at (top, left).
func zeroPad2d(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, input s: [Int], output o: [Int],
               top: Int, left: Int) {
    y.update(repeating: 0, count: o.reduce(1, *))
    let rowCount = s[2] * s[3]
    for b in 0..<s[0] {
        for r in 0..<s[1] {
            let src = x + (b * s[1] + r) * rowCount
            let dst = y + ((b * o[1] + r + top) * o[2] + left) * o[3]
            dst.update(from: src, count: rowCount)
        }
    }
}

/// Cropping2D: the window of size `output` at (top, left).
func crop2d(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, input s: [Int], output o: [Int],
            top: Int, left: Int) {
    let rowCount = o[2] * o[3]
    for b in 0..<o[0] {
        for r in 0..<o[1] {
            let src = x + ((b * s[1] + r + top) * s[2] + left) * s[3]
            (y + (b * o[1] + r) * rowCount).update(from: src, count: rowCount)
        }
    }
}

/// UpSampling2D. nearest repeats rows and columns; bilinear follows tf.image.resize
/// (half-pixel centres, edges clamped), as Keras's UpSampling2D(interpolation="bilinear").
func upsample2d(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, input s: [Int],
                factorH: Int, factorW: Int, interpolation: Interpolation) {
    let (n, h, w, c) = (s[0], s[1], s[2], s[3])
    let oh = h * factorH, ow = w * factorW
    for b in 0..<n {
        for oy in 0..<oh {
            for ox in 0..<ow {
                let dst = y + ((b * oh + oy) * ow + ox) * c
                switch interpolation {
                case .nearest:
                    let src = x + ((b * h + oy / factorH) * w + ox / factorW) * c
                    dst.update(from: src, count: c)
                case .bilinear:
                    let fy = max(0, (Float(oy) + 0.5) / Float(factorH) - 0.5)
                    let fx = max(0, (Float(ox) + 0.5) / Float(factorW) - 0.5)
                    let y0 = min(Int(fy), h - 1), x0 = min(Int(fx), w - 1)
                    let y1 = min(y0 + 1, h - 1), x1 = min(x0 + 1, w - 1)
                    let dy = fy - Float(y0), dx = fx - Float(x0)
                    let p00 = x + ((b * h + y0) * w + x0) * c, p01 = x + ((b * h + y0) * w + x1) * c
                    let p10 = x + ((b * h + y1) * w + x0) * c, p11 = x + ((b * h + y1) * w + x1) * c
                    for ch in 0..<c {
                        let top = p00[ch] + (p01[ch] - p00[ch]) * dx
                        let bottom = p10[ch] + (p11[ch] - p10[ch]) * dx
                        dst[ch] = top + (bottom - top) * dy
                    }
                }
            }
        }
    }
}

/// y = x transposed by `permutation` (output axis d is input axis permutation[d]).
func transpose(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, shape: [Int], permutation: [Int]) {
    let rank = shape.count
    var inStrides = Array(repeating: 1, count: rank)
    for d in stride(from: rank - 2, through: 0, by: -1) { inStrides[d] = inStrides[d + 1] * shape[d + 1] }
    let outShape = permutation.map { shape[$0] }
    let gathered = permutation.map { inStrides[$0] }
    let n = shape.reduce(1, *)
    var index = Array(repeating: 0, count: rank)
    var offset = 0
    for j in 0..<n {
        y[j] = x[offset]
        var d = rank - 1
        while d >= 0 {
            index[d] += 1
            offset += gathered[d]
            if index[d] < outShape[d] { break }
            offset -= gathered[d] * outShape[d]
            index[d] = 0
            d -= 1
        }
    }
}

/// Concatenate along `axis` (0-based, batch included).
func concatenate(_ inputs: [UnsafePointer<Float>], _ shapes: [[Int]], _ y: UnsafeMutablePointer<Float>, axis: Int) {
    let outer = shapes[0][..<axis].reduce(1, *)
    let inner = shapes[0][(axis + 1)...].reduce(1, *)
    let total = shapes.map { $0[axis] }.reduce(0, +) * inner
    var at = 0
    for (x, s) in zip(inputs, shapes) {
        let chunk = s[axis] * inner
        for o in 0..<outer { (y + o * total + at).update(from: x + o * chunk, count: chunk) }
        at += chunk
    }
}

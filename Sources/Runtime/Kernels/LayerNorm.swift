// LayerNormalization over any set of axes of a row-major tensor (NHWC for images).
// The input's elements split into groups (one per index of the axes not normalized) of `reduced`
// elements (one per index of the normalized axes). Element r of group k sits at
// groupOffset[k] + reducedOffset[r]; gamma and beta are indexed by r, which is Keras's layout:
// it reshapes them onto the normalized axes in the input's order.
// Per group: mean, variance = mean((x - mean)^2) (the centred variance, as tf.nn.moments and
// keras.ops.moments), inv = 1 / sqrt(variance + epsilon);
//   y = (x - mean) * inv * gamma + beta, or with Keras 3's rms_scaling y = x * inv * gamma.
// Sums are accumulated in Double, so the result is at least as exact as TensorFlow's float32.

struct LayerNormGeometry {
    let groups: Int
    let reduced: Int
    let groupOffset: [Int]
    let reducedOffset: [Int]
    /// The normalized axes are the trailing ones: each group is `reduced` consecutive values.
    let contiguous: Bool

    /// `shape` includes the batch axis; `dims` are 0-based, increasing, and exclude axis 0.
    init(shape: [Int], dims: [Int]) {
        let strides = (0..<shape.count).map { shape[($0 + 1)...].reduce(1, *) }
        func offsets(_ axes: [Int]) -> [Int] {
            var out = [0]
            for a in axes {
                out = out.flatMap { base in (0..<shape[a]).map { base + $0 * strides[a] } }
            }
            return out
        }
        let kept = (0..<shape.count).filter { !dims.contains($0) }
        groupOffset = offsets(kept)
        reducedOffset = offsets(dims)
        groups = groupOffset.count
        reduced = reducedOffset.count
        contiguous = dims == Array((shape.count - dims.count)..<shape.count)
    }

    /// The group's mean and 1 / sqrt(variance + epsilon).
    @inline(__always)
    func moments(_ x: UnsafePointer<Float>, group k: Int, epsilon: Float) -> (mean: Float, inv: Float) {
        let base = x + groupOffset[k]
        var sum = 0.0
        if contiguous {
            for r in 0..<reduced { sum += Double(base[r]) }
        } else {
            for r in 0..<reduced { sum += Double(base[reducedOffset[r]]) }
        }
        let mean = sum / Double(reduced)
        var squares = 0.0
        if contiguous {
            for r in 0..<reduced { let d = Double(base[r]) - mean; squares += d * d }
        } else {
            for r in 0..<reduced { let d = Double(base[reducedOffset[r]]) - mean; squares += d * d }
        }
        let variance = squares / Double(reduced)
        return (Float(mean), Float(1 / (variance + Double(epsilon)).squareRoot()))
    }
}

func layerNormalization(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, geometry g: LayerNormGeometry,
                        gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>, epsilon: Float, rms: Bool) {
    parallelFor(g.groups, minChunk: max(1, 8192 / max(1, g.reduced))) { _, range in
        for k in range {
            let (mean, inv) = g.moments(x, group: k, epsilon: epsilon)
            let center: Float = rms ? 0 : mean
            let src = x + g.groupOffset[k], dst = y + g.groupOffset[k]
            if g.contiguous {
                if rms {
                    for r in 0..<g.reduced { dst[r] = src[r] * inv * gamma[r] }
                } else {
                    for r in 0..<g.reduced { dst[r] = (src[r] - center) * inv * gamma[r] + beta[r] }
                }
            } else {
                for r in 0..<g.reduced {
                    let o = g.reducedOffset[r]
                    dst[o] = rms ? src[o] * inv * gamma[r] : (src[o] - center) * inv * gamma[r] + beta[r]
                }
            }
        }
    }
}

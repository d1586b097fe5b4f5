// Dropout in training mode with Keras's semantics: each element of the mask is kept with
// probability 1 - rate and kept values are scaled by 1 / (1 - rate), so y = x * mask with
// mask in {0, 1/(1-rate)}. The mask has `noise_shape`: the input's shape with 1 on the axes it is
// shared along (EfficientNet's block dropout uses [N, 1, 1, C]: one decision per image and
// channel), broadcast over x. Backward multiplies dy by the same mask.
//
// Randomness: a counter-based generator. Mask element i of step `step` under `seed` is a pure
// function of (seed, step, i) (SplitMix64's finaliser applied twice), so a step's mask is the
// same whatever the thread count or order, and a resumed run reproduces it.

/// Counter-based uniform numbers: `DropoutRandom(seed:step:).uniform(i)` in [0, 1), 24 bits.
public struct DropoutRandom: Sendable {
    public let key: UInt64

    public init(seed: UInt64, step: UInt64) {
        key = DropoutRandom.mix(seed ^ DropoutRandom.mix(step &+ 0x9E37_79B9_7F4A_7C15))
    }

    @inline(__always) static func mix(_ v: UInt64) -> UInt64 {
        var z = v
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The i-th number of this (seed, step).
    @inline(__always) public func uniform(_ i: Int) -> Float {
        let bits = DropoutRandom.mix(key &+ UInt64(truncatingIfNeeded: i) &* 0x9E37_79B9_7F4A_7C15)
        return Float(bits >> 40) * (1.0 / 16_777_216.0)
    }
}

/// Writes a dropout mask of `count` elements (the noise shape's element count): 1 / (1 - rate)
/// where u_i >= rate (kept, as tf.nn.dropout decides), 0 elsewhere. rate in [0, 1). `offset`
/// numbers the elements from there (a data-parallel rank's share of a larger batch gets the mask
/// rows the whole batch would have).
public func dropoutMask(seed: UInt64, step: UInt64, rate: Float, mask: UnsafeMutablePointer<Float>, count: Int,
                        offset: Int = 0) {
    precondition(rate >= 0 && rate < 1, "dropout rate must be in [0, 1)")
    let rng = DropoutRandom(seed: seed, step: step)
    let scale = 1 / (1 - rate)
    parallelFor(count, minChunk: 1 << 15) { _, r in
        for i in r { mask[i] = rng.uniform(i + offset) >= rate ? scale : 0 }
    }
}

/// y = x * mask broadcast from `maskShape` to `shape` (same rank; 1 where shared). The forward
/// (from x) and the backward (dInput from dOutput) are this same product. Overwrites y, or adds
/// into it when `accumulate` (the backward into a shared gradient). y may be x.
public func applyDropoutMask(_ x: UnsafePointer<Float>, mask: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                             shape: [Int], maskShape: [Int], accumulate: Bool) {
    precondition(shape.count == maskShape.count && zip(shape, maskShape).allSatisfy { $1 == $0 || $1 == 1 },
                 "noise shape \(maskShape) does not broadcast to \(shape)")
    let count = shape.reduce(1, *)
    // Split the axes into: leading axes kept in the mask (outer), a middle run of shared axes
    // (repeat), trailing axes kept (inner). [N, 1, 1, C] is outer N, repeat H*W, inner C;
    // the full shape is inner = count. Other patterns fall back to per-element offsets.
    let rank = shape.count
    if shape == maskShape {
        parallelFor(count, minChunk: 1 << 15) { _, r in
            var i = r.lowerBound
            while i + 8 <= r.upperBound { put(load(x + i) * load(mask + i), y + i, accumulate: accumulate); i += 8 }
            while i < r.upperBound { put(x[i] * mask[i], y + i, accumulate: accumulate); i += 1 }
        }
        return
    }
    var lead = 0
    while lead < rank && maskShape[lead] == shape[lead] { lead += 1 }
    var trail = rank
    while trail > lead && maskShape[trail - 1] == shape[trail - 1] { trail -= 1 }
    let middleShared = (lead..<trail).allSatisfy { maskShape[$0] == 1 }
    if middleShared {
        let outer = shape[..<lead].reduce(1, *), rep = shape[lead..<trail].reduce(1, *)
        let inner = shape[trail...].reduce(1, *)
        if inner == 1 {
            // One decision per leading index (EfficientNet's drop-connect, [N, 1, 1, 1]): runs of
            // `rep` elements times one scalar, 8 lanes at a time. Row by row would take one
            // element per row and a division per element.
            parallelFor(count, minChunk: 1 << 15) { _, r in
                var i = r.lowerBound
                while i < r.upperBound {
                    let o = i / rep, end = min(r.upperBound, (o + 1) * rep)
                    let m = Vec(repeating: mask[o])
                    while i + 8 <= end { put(load(x + i) * m, y + i, accumulate: accumulate); i += 8 }
                    if i < end { putPartial(loadPartial(x + i, end - i) * m, y + i, end - i, accumulate: accumulate) }
                    i = end
                }
            }
            return
        }
        parallelFor(outer * rep, minChunk: max(1, 16_384 / max(1, inner))) { _, rows in
            for row in rows {
                let m = mask + (row / rep) * inner, src = x + row * inner, dst = y + row * inner
                var i = 0
                while i + 8 <= inner { put(load(src + i) * load(m + i), dst + i, accumulate: accumulate); i += 8 }
                while i < inner { put(src[i] * m[i], dst + i, accumulate: accumulate); i += 1 }
            }
        }
        return
    }
    var strides = Array(repeating: 0, count: rank), acc = 1
    for d in stride(from: rank - 1, through: 0, by: -1) {
        strides[d] = maskShape[d] == 1 ? 0 : acc
        acc *= maskShape[d]
    }
    for j in 0..<count {
        var rem = j, off = 0
        for d in stride(from: rank - 1, through: 0, by: -1) {
            off += (rem % shape[d]) * strides[d]
            rem /= shape[d]
        }
        put(x[j] * mask[off], y + j, accumulate: accumulate)
    }
}

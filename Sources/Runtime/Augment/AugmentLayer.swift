// Keras's augmentation layers in training mode (RandomFlip, RandomRotation, RandomZoom,
// RandomTranslation, RandomContrast, RandomBrightness, RandomCrop): one draw of each layer's
// random parameters per image (tf-keras's RandomContrast and RandomCrop: per call), from a stream
// keyed by (run seed, layer, step, global row), so that an image's augmentation does not depend on
// how the batch was split, and the transformation as that Keras computes it (float32).
import Foundation
import Graph

/// One image's (or one call's) draw of an augmentation layer.
enum AugmentDraw: Equatable {
    case flip(horizontal: Bool, vertical: Bool)
    case transform(ProjectiveMatrix)
    case contrast(Float)
    case brightness(delta: Float)
    case crop(top: Int, left: Int)
    /// The inference form (tf-keras's RandomCrop on an image smaller than its target resizes).
    case inference
}

extension AugmentSpec {
    /// Whether one draw serves the whole call (tf-keras's RandomContrast and RandomCrop), rather
    /// than one per image.
    var drawsPerCall: Bool {
        switch kind {
        case .contrast(_, _, let perBatch): return perBatch
        case .crop: return true
        default: return false
        }
    }

    /// The random stream of this layer (`key`) for one image (`row`, or nil for a per-call draw)
    /// at one step.
    static func stream(seed: UInt64, key: UInt64, step: Int, row: Int?) -> SplitMix64 {
        SplitMix64(seed: derivedSeed(seed, .augmentLayer, key, UInt64(truncatingIfNeeded: step),
                                     row.map { UInt64($0) } ?? UInt64.max))
    }

    /// A uniform draw in [lower, upper), rounded to float32 as Keras's float32 draws are.
    private static func uniform(_ r: DrawRange, _ rng: inout SplitMix64) -> Float {
        r.isFixed ? Float(r.lower) : Float(rng.uniform(r.lower, r.upper))
    }

    /// This layer's parameters for an image of `height` x `width`.
    func draw(_ rng: inout SplitMix64, height: Int, width: Int) -> AugmentDraw {
        switch kind {
        case .flip(let h, let v, let oneDraw):
            let first = rng.nextUnit() < 0.5
            let second = oneDraw ? first : rng.nextUnit() < 0.5
            return .flip(horizontal: h && first, vertical: v && (h ? second : first))
        case .rotation(let turns):
            // tf-keras draws radians in [lower * 2 pi, upper * 2 pi), Keras 3 degrees in
            // [lower * 360, upper * 360); either draw is float32.
            let scale = kerasMajor >= 3 ? 360.0 : 2 * Double.pi
            let angle = AugmentSpec.uniform(DrawRange(turns.lower * scale, turns.upper * scale), &rng)
            return .transform(rotationMatrix(angle: angle, height: height, width: width, kerasMajor: kerasMajor))
        case .zoom(let hr, let wr):
            let zh = AugmentSpec.uniform(DrawRange(1 + hr.lower, 1 + hr.upper), &rng)
            let zw = wr.map { AugmentSpec.uniform(DrawRange(1 + $0.lower, 1 + $0.upper), &rng) } ?? zh
            return .transform(zoomMatrix(height: zh, width: zw, imageHeight: height, imageWidth: width))
        case .translation(let hr, let wr):
            let dy = AugmentSpec.uniform(hr, &rng) * Float(height)
            let dx = AugmentSpec.uniform(wr, &rng) * Float(width)
            return .transform(ProjectiveMatrix(a0: 1, a1: 0, a2: -dx, b0: 0, b1: 1, b2: -dy, c0: 0, c1: 0))
        case .contrast(let factor, _, _):
            return .contrast(AugmentSpec.uniform(factor, &rng))
        case .brightness(let factor, let range):
            return .brightness(delta: AugmentSpec.uniform(factor, &rng) * Float(range.upper - range.lower))
        case .crop(let h, let w, _):
            // tf-keras: a random crop when the image is at least the target in both dimensions
            // (start = a uniform integer modulo diff + 1), else the inference resize.
            guard height >= h && width >= w else { return .inference }
            return .crop(top: rng.index(below: height - h + 1), left: rng.index(below: width - w + 1))
        }
    }
}

/// tf-keras's `get_rotation_matrix` (angle in radians) or Keras 3's `_compute_affine_matrix` about
/// the centre (angle in degrees, converted in float32): the same rotation, each Keras's float32 order.
func rotationMatrix(angle: Float, height: Int, width: Int, kerasMajor: Int) -> ProjectiveMatrix {
    let h1 = Float(height) - 1, w1 = Float(width) - 1
    if kerasMajor < 3 {
        let c = cos(angle), s = sin(angle)
        let xOffset = (w1 - (c * w1 - s * h1)) / 2
        let yOffset = (h1 - (s * w1 + c * h1)) / 2
        return ProjectiveMatrix(a0: c, a1: -s, a2: xOffset, b0: s, b1: c, b2: yOffset, c0: 0, c1: 0)
    }
    let radians = angle * Float(Double.pi / 180)
    let c = cos(radians), s = sin(radians)
    let cx = 0.5 * w1, cy = 0.5 * h1
    let a0 = c, a1 = -s, b0 = s, b1 = c
    return ProjectiveMatrix(a0: a0, a1: a1, a2: cx - cx * a0 - cy * a1, b0: b0, b1: b1, b2: cy - cx * b0 - cy * b1,
                            c0: 0, c1: 0)
}

/// Both Kerases' zoom matrix: the output scaled by the zoom about the image centre.
func zoomMatrix(height zh: Float, width zw: Float, imageHeight: Int, imageWidth: Int) -> ProjectiveMatrix {
    let xOffset = ((Float(imageWidth) - 1) / 2) * (1 - zw)
    let yOffset = ((Float(imageHeight) - 1) / 2) * (1 - zh)
    return ProjectiveMatrix(a0: zw, a1: 0, a2: xOffset, b0: 0, b1: zh, b2: yOffset, c0: 0, c1: 0)
}

/// The inference form of a RandomCrop in tf-keras (resize after a crop to the aspect ratio), as a
/// data move; nil for every other layer (the identity).
func augmentInferenceMove(_ spec: AugmentSpec, input x: [Int], output y: [Int]) -> DataMove? {
    guard case .crop(_, _, let major) = spec.kind, major < 3, x[1] != y[1] || x[2] != y[2] else { return nil }
    let w = aspectCropWindow(height: x[1], width: x[2], targetHeight: y[1], targetWidth: y[2])
    return .resize(top: w.top, left: w.left, height: w.height, width: w.width, interpolation: .bilinear)
}

/// One image of `draw`: `src` [h, w, c] into `dst` (the layer's output size). `inference` writes
/// the layer's inference form of a single image.
func applyAugment(_ spec: AugmentSpec, _ draw: AugmentDraw, _ src: UnsafePointer<Float>, height: Int, width: Int,
                  channels c: Int, into dst: UnsafeMutablePointer<Float>, outHeight: Int, outWidth: Int,
                  inference: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
    let n = height * width * c
    switch draw {
    case .inference:
        inference(src, dst)
    case .flip(let h, let v):
        for r in 0..<height {
            let sr = v ? height - 1 - r : r
            for q in 0..<width {
                let sq = h ? width - 1 - q : q
                (dst + (r * width + q) * c).update(from: src + (sr * width + sq) * c, count: c)
            }
        }
    case .transform(let m):
        projectiveTransform(src, height: height, width: width, channels: c, m, interpolation: spec.interpolation,
                            fill: spec.fill, fillValue: spec.fillValue, into: dst)
    case .contrast(let factor):
        guard case .contrast(_, let clip, _) = spec.kind else { preconditionFailure("a contrast draw of another layer") }
        let lo = Float(clip.lower), hi = Float(clip.upper)
        for ch in 0..<c {
            var sum = 0.0
            for p in 0..<(height * width) { sum += Double(src[p * c + ch]) }
            let mean = Float(sum / Double(height * width))
            for p in 0..<(height * width) {
                let v = (src[p * c + ch] - mean) * factor + mean
                // numpy's clip: minimum(maximum(v, lo), hi).
                dst[p * c + ch] = min(max(v, lo), hi)
            }
        }
    case .brightness(let delta):
        guard case .brightness(_, let range) = spec.kind else { preconditionFailure("a brightness draw of another layer") }
        let lo = Float(range.lower), hi = Float(range.upper)
        for i in 0..<n { dst[i] = min(max(src[i] + delta, lo), hi) }
    case .crop(let top, let left):
        for r in 0..<outHeight {
            (dst + r * outWidth * c).update(from: src + ((top + r) * width + left) * c, count: outWidth * c)
        }
    }
}

/// A batch [N, H, W, C] through the layer in training mode, image `b` being global row
/// `rowOffset + b` of step `step`.
func augmentBatch(_ spec: AugmentSpec, key: UInt64, seed: UInt64, step: Int, rowOffset: Int,
                  _ x: UnsafePointer<Float>, shape: [Int], into y: UnsafeMutablePointer<Float>, outShape: [Int],
                  inference: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) {
    let (n, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
    let inCount = h * w * c, outCount = outShape[1] * outShape[2] * c
    var call = AugmentSpec.stream(seed: seed, key: key, step: step, row: nil)
    let shared = spec.drawsPerCall ? spec.draw(&call, height: h, width: w) : nil
    parallelFor(n) { _, items in
        for b in items {
            var rng = AugmentSpec.stream(seed: seed, key: key, step: step, row: rowOffset + b)
            let d = shared ?? spec.draw(&rng, height: h, width: w)
            applyAugment(spec, d, x + b * inCount, height: h, width: w, channels: c, into: y + b * outCount,
                         outHeight: outShape[1], outWidth: outShape[2], inference: inference)
        }
    }
}

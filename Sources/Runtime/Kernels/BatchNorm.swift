// BatchNormalization at inference, and the per-channel affine kernel it becomes.
//   x, y: [..., C] row-major (channels last, Keras's axis -1), viewed as [count / C, C]
//   scale, shift: [C]
// Most BN layers fold into the preceding conv's epilogue (see `foldBatchNorm`); `channelAffine`
// is for the ones that cannot (after an Add, a Concatenate, an input).
import Foundation
import Graph

/// Inference BN as y = x * scale + shift:
///   scale = gamma / sqrt(moving_variance + epsilon), shift = beta - moving_mean * scale,
/// with gamma = 1 when `scale=False` in Keras (nil) and beta = 0 when `center=False` (nil).
/// `bias`, when the BN follows a layer with a bias b, is folded in too:
///   shift = beta + (b - moving_mean) * scale.
/// Computed in Double, so the folded values are the correctly rounded floats.
public func foldBatchNorm(gamma: [Float]?, beta: [Float]?, movingMean: [Float], movingVariance: [Float],
                          epsilon: Float, bias: [Float]? = nil) -> (scale: [Float], shift: [Float]) {
    let c = movingMean.count
    precondition(movingVariance.count == c && (gamma?.count ?? c) == c && (beta?.count ?? c) == c
                 && (bias?.count ?? c) == c, "BatchNormalization weights of different lengths")
    var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
    for i in 0..<c {
        let s = Double(gamma?[i] ?? 1) / (Double(movingVariance[i]) + Double(epsilon)).squareRoot()
        scale[i] = Float(s)
        shift[i] = Float(Double(beta?[i] ?? 0) + (Double(bias?[i] ?? 0) - Double(movingMean[i])) * s)
    }
    return (scale, shift)
}

/// y = act(x * scale[c] + shift[c]) over `count` floats with `channels` channels innermost.
/// `output` may be `input` (in place). Either of scale/shift may be nil; softmax is over C.
public func channelAffine(input: UnsafePointer<Float>, count: Int, channels: Int,
                          scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?,
                          activation: ActivationSpec = .linear, output: UnsafeMutablePointer<Float>) {
    precondition(channels > 0 && count % channels == 0, "channelAffine: count is not a multiple of channels")
    let rows = count / channels
    let e = Epilogue(scale: scale, shift: shift, activation: activation)
    if e.isIdentity {
        if UnsafePointer(output) != input { output.update(from: input, count: count) }
        return
    }
    parallelFor(rows, minChunk: max(1, 16_384 / channels)) { _, r in
        e.apply(from: input + r.lowerBound * channels, ldFrom: channels,
                to: output + r.lowerBound * channels, ldTo: channels, rows: r.count, cols: channels,
                outputOffset: r.lowerBound * channels)
    }
    if activation.kind == .softmax { softmax(output, outer: rows, axisLength: channels, inner: 1) }
}

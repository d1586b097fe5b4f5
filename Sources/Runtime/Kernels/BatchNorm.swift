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
    if channels < 8 && activation.kind != .softmax && count >= 64 {
        withActivation(activation, PeriodicAffineJob(x: input, y: output, count: count, channels: channels,
                                                     scale: scale, shift: shift, activation: activation))
        return
    }
    parallelFor(rows, minChunk: max(1, 16_384 / channels)) { _, r in
        e.apply(from: input + r.lowerBound * channels, ldFrom: channels,
                to: output + r.lowerBound * channels, ldTo: channels, rows: r.count, cols: channels,
                outputOffset: r.lowerBound * channels)
    }
    if activation.kind == .softmax { softmax(output, outer: rows, axisLength: channels, inner: 1) }
}

/// channelAffine for fewer than 8 channels (an image input's Rescaling/Normalization: C = 3),
/// where rows of C would be all partial vectors: the data is read as whole vectors over a period
/// of lcm(C, 8) floats, against scale and shift repeated to that period.
private struct PeriodicAffineJob: ActivationConsumer {
    let x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, count: Int, channels: Int
    let scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?
    let activation: ActivationSpec

    func run<A: VectorActivation>(_ act: A) {
        var g = 8, c = channels
        while c != 0 { (g, c) = (c, g % c) }
        let period = channels * 8 / g, vectors = period / 8        // period <= 56 floats
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 112) { buf in
            let sp = buf.baseAddress!, bp = sp + 56
            for i in 0..<period {
                sp[i] = scale?[i % channels] ?? 1
                bp[i] = shift?[i % channels] ?? 0
            }
            let periods = count / period
            parallelFor(periods, minChunk: max(1, 16_384 / period)) { _, r in
                var p = x + r.lowerBound * period, q = y + r.lowerBound * period
                for _ in r {
                    for v in 0..<vectors {
                        store(act(madd(load(p + 8 * v), load(sp + 8 * v), load(bp + 8 * v))), q + 8 * v)
                    }
                    p += period
                    q += period
                }
            }
            // The rest: whole rows, since the period is a multiple of C.
            let done = periods * period
            Epilogue(scale: scale, shift: shift, activation: activation)
                .apply(from: x + done, ldFrom: channels, to: y + done, ldTo: channels,
                       rows: (count - done) / channels, cols: channels, outputOffset: done)
        }
    }
}

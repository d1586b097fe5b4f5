// Element-wise and per-channel operations over row-major tensors whose last axis is the channel.
import Foundation
import Graph

/// y = act(x * scale[c] + shift[c]) with c = index mod channels (BatchNormalization at inference,
/// Rescaling, Normalization). y may alias x.
func channelAffine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int, channels c: Int,
                   scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, activation: ActivationSpec) {
    let rows = count / c
    parallelFor(rows, minChunk: max(1, 16384 / c)) { _, range in
        for r in range {
            let src = x + r * c, dst = y + r * c
            for ch in 0..<c { dst[ch] = src[ch] * scale[ch] + shift[ch] }
        }
        if activation.kind != .linear {
            applyActivation(activation, y + range.lowerBound * c, count: range.count * c)
        }
    }
}

/// out[b, p, c] = x[b, p, c] * s[b, c]: squeeze-and-excitation's broadcast multiply.
func channelScale(_ x: UnsafePointer<Float>, scale s: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                  batch: Int, pixels: Int, channels c: Int) {
    parallelFor(batch * pixels, minChunk: max(1, 16384 / c)) { _, range in
        for row in range {
            let b = row / pixels
            let src = x + row * c, dst = y + row * c, sc = s + b * c
            for ch in 0..<c { dst[ch] = src[ch] * sc[ch] }
        }
    }
}

/// Keras merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum) with numpy
/// broadcasting; shapes include the batch axis.
func merge(_ inputs: [UnsafePointer<Float>], _ shapes: [[Int]], _ y: UnsafeMutablePointer<Float>,
           outShape: [Int], kind: MergeKind) {
    let n = outShape.reduce(1, *)
    let rank = outShape.count
    let sameShape = shapes.allSatisfy { $0 == outShape }
    // Index maps for broadcast inputs: strides with 0 on broadcast axes.
    let strides: [[Int]] = shapes.map { s in
        let padded = Array(repeating: 1, count: rank - s.count) + s
        var st = Array(repeating: 0, count: rank)
        var acc = 1
        for d in stride(from: rank - 1, through: 0, by: -1) {
            st[d] = padded[d] == 1 && outShape[d] != 1 ? 0 : acc
            acc *= padded[d]
        }
        return st
    }
    func source(_ k: Int, _ index: Int) -> Float {
        if sameShape { return inputs[k][index] }
        var rem = index, offset = 0
        for d in stride(from: rank - 1, through: 0, by: -1) {
            let i = rem % outShape[d]
            rem /= outShape[d]
            offset += i * strides[k][d]
        }
        return inputs[k][offset]
    }
    parallelFor(n, minChunk: 16384) { _, range in
        for j in range {
            var acc = source(0, j)
            for k in 1..<inputs.count {
                let v = source(k, j)
                switch kind {
                case .add, .average: acc += v
                case .subtract: acc -= v
                case .multiply: acc *= v
                case .maximum: acc = max(acc, v)
                case .minimum: acc = min(acc, v)
                }
            }
            y[j] = kind == .average ? acc / Float(inputs.count) : acc
        }
    }
}

/// log(softmax(x)) along an axis, computed as x - max - log(sum(exp(x - max))) so tiny
/// probabilities keep their logarithm instead of underflowing to -inf.
func logSoftmax(_ x: UnsafeMutablePointer<Float>, outer: Int, axisLength: Int, inner: Int) {
    for o in 0..<outer {
        for i in 0..<inner {
            let base = x + o * axisLength * inner + i
            var m = -Float.infinity
            for a in 0..<axisLength { m = max(m, base[a * inner]) }
            var sum = 0.0
            for a in 0..<axisLength { sum += Double(exp(base[a * inner] - m)) }
            let lse = m + Float(log(sum))
            for a in 0..<axisLength { base[a * inner] -= lse }
        }
    }
}

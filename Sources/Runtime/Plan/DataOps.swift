import Foundation
import Graph

/// The data-moving and element-wise operations as both the inference plan and the training plan
/// run them forward: shapes (batch included) in, the kernels called with their geometry.
enum DataOps {
    static func pool(_ kind: PoolKind, poolH: Int, poolW: Int, strideH: Int, strideW: Int, padTop: Int, padLeft: Int,
                     _ x: UnsafePointer<Float>, _ s: [Int], _ y: UnsafeMutablePointer<Float>, _ o: [Int]) {
        pool2d(kind, input: x, geometry: poolGeometry(s, o, poolH, poolW, strideH, strideW, padTop, padLeft), output: y)
    }

    static func globalPool(_ kind: PoolKind, _ x: UnsafePointer<Float>, _ s: [Int], _ y: UnsafeMutablePointer<Float>) {
        if kind == .max {
            globalMaxPool(input: x, batch: s[0], spatial: s[1] * s[2], channels: s[3], output: y)
        } else {
            globalAveragePool(input: x, batch: s[0], spatial: s[1] * s[2], channels: s[3], output: y)
        }
    }

    static func pad(top: Int, bottom: Int, left: Int, right: Int, _ x: UnsafePointer<Float>, _ s: [Int],
                    _ y: UnsafeMutablePointer<Float>) {
        zeroPad2d(input: x, batch: s[0], height: s[1], width: s[2], channels: s[3], top: top, bottom: bottom,
                  left: left, right: right, output: y)
    }

    static func crop(top: Int, left: Int, _ x: UnsafePointer<Float>, _ s: [Int], _ y: UnsafeMutablePointer<Float>, _ o: [Int]) {
        crop2d(input: x, batch: s[0], height: s[1], width: s[2], channels: s[3], top: top, bottom: s[1] - o[1] - top,
               left: left, right: s[2] - o[2] - left, output: y)
    }

    static func upsample(sizeH: Int, sizeW: Int, _ interpolation: Interpolation, _ x: UnsafePointer<Float>, _ s: [Int],
                         _ y: UnsafeMutablePointer<Float>) {
        upsampling2d(input: x, batch: s[0], height: s[1], width: s[2], channels: s[3], sizeH: sizeH, sizeW: sizeW,
                     interpolation: interpolation, output: y)
    }

    static func concat(axis: Int, _ xs: [UnsafePointer<Float>], _ shapes: [[Int]], _ y: UnsafeMutablePointer<Float>) {
        let outer = shapes[0][..<axis].reduce(1, *), inner = shapes[0][(axis + 1)...].reduce(1, *)
        concatenate(zip(xs, shapes).map { (data: $0, axisLength: $1[axis]) }, outer: outer, inner: inner, output: y)
    }

    /// Keras's merge layers over two or more inputs, with numpy broadcasting.
    static func merge(_ kind: MergeKind, _ xs: [UnsafePointer<Float>], _ shapes: [[Int]], _ y: UnsafeMutablePointer<Float>,
                      _ o: [Int]) {
        let n = o.reduce(1, *)
        if kind == .average && shapes.allSatisfy({ $0 == o }) {
            average(xs, count: n, output: y)
            return
        }
        let op: BinaryOp
        switch kind {
        case .add, .average: op = .add
        case .subtract: op = .subtract
        case .multiply: op = .multiply
        case .maximum: op = .maximum
        case .minimum: op = .minimum
        }
        guard xs.count > 1 else { y.update(from: xs[0], count: n); return }
        elementwise(op, xs[0], shape: shapes[0], xs[1], shape: shapes[1], output: y)
        var shape = broadcastShape(shapes[0], shapes[1])!
        for k in 2..<xs.count {
            // The running result already has the output's leading shape; fold the next input in.
            elementwise(op, UnsafePointer(y), shape: shape, xs[k], shape: shapes[k], output: y)
            shape = broadcastShape(shape, shapes[k])!
        }
        if kind == .average {
            let inv = 1 / Float(xs.count)
            for i in 0..<n { y[i] *= inv }
        }
    }

    static func affine(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int,
                       scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, channels: Int,
                       activation: ActivationSpec = .linear) {
        channelAffine(input: x, count: count, channels: channels, scale: scale, shift: shift, activation: activation,
                      output: y)
    }
}

/// The geometry of a pooling window over NHWC input `x` and output `y` (batch included).
func poolGeometry(_ x: [Int], _ y: [Int], _ ph: Int, _ pw: Int, _ sh: Int, _ sw: Int, _ pt: Int, _ pl: Int) -> Conv2DGeometry {
    ConvParams(kernelH: ph, kernelW: pw, strideH: sh, strideW: sw, dilationH: 1, dilationW: 1, padTop: pt, padLeft: pl,
               outChannels: y[3]).geometry(input: x, output: y)
}

/// log(softmax(x)) along an axis, as x - max - log(sum(exp(x - max))): tiny probabilities keep
/// their logarithm instead of underflowing to -inf.
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

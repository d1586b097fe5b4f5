import Graph

/// The primitives that move, pad, crop, slice, resize, pool or join data and own no weights: each defined once,
/// forward and backward side by side, for the inference plan (`PlanOp.move`) and training
/// (`TrainOp.move`) alike. Shapes include the batch axis.
enum DataMove: Equatable {
    case pool(kind: PoolKind, poolH: Int, poolW: Int, strideH: Int, strideW: Int, padTop: Int, padLeft: Int)
    case globalPool(PoolKind)
    case pad(top: Int, bottom: Int, left: Int, right: Int)
    case crop(top: Int, left: Int)
    case upsample(sizeH: Int, sizeW: Int, interpolation: Interpolation)
    case transpose(perm: [Int])
    case concat(axis: Int)
    /// tf.image.resize of each image's window (top, left, height, width) to the output's size.
    case resize(top: Int, left: Int, height: Int, width: Int, interpolation: Interpolation)
    /// `x[...]`: a strided window (`sliceWindow`), index axes laid out as kept.
    case slice(SliceWindow)

    /// The operation's name, for profiles.
    var kindName: String { String(describing: self).prefix { $0 != "(" }.description }

    /// y = op(xs); `y` has shape `yShape`.
    func forward(_ xs: [UnsafePointer<Float>], _ shapes: [[Int]], _ y: UnsafeMutablePointer<Float>, _ yShape: [Int]) {
        let x = xs[0], s = shapes[0]
        switch self {
        case .pool(let kind, let ph, let pw, let sh, let sw, let pt, let pl):
            DataOps.pool(kind, poolH: ph, poolW: pw, strideH: sh, strideW: sw, padTop: pt, padLeft: pl, x, s, y, yShape)
        case .globalPool(let kind):
            DataOps.globalPool(kind, x, s, y)
        case .pad(let t, let b, let l, let r):
            DataOps.pad(top: t, bottom: b, left: l, right: r, x, s, y)
        case .crop(let t, let l):
            DataOps.crop(top: t, left: l, x, s, y, yShape)
        case .upsample(let fh, let fw, let interpolation):
            DataOps.upsample(sizeH: fh, sizeW: fw, interpolation, x, s, y)
        case .transpose(let perm):
            Runtime.transpose(input: x, shape: s, perm: perm, output: y)
        case .concat(let axis):
            DataOps.concat(axis: axis, xs, shapes, y)
        case .resize(let top, let left, let h, let w, let interpolation):
            resizeImages(input: x, batch: s[0], height: s[1], width: s[2], channels: s[3], window: (top, left, h, w),
                         outHeight: yShape[1], outWidth: yShape[2], interpolation: interpolation, output: y)
        case .slice(let window):
            stridedSlice(x, shape: s, window: window, y)
        }
    }

    /// The gradient of input `k` (`dx`, written or added to per `accumulate`) from the output's
    /// (`dy`); `xs` are the forward inputs (max pooling routes by them).
    func backward(input k: Int, _ xs: [UnsafePointer<Float>], _ shapes: [[Int]], dy: UnsafePointer<Float>, _ yShape: [Int],
                  dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let s = shapes[k]
        switch self {
        case .pool(let kind, let ph, let pw, let sh, let sw, let pt, let pl):
            pool2dBackward(input: xs[0], dOutput: dy, dInput: dx, geometry: poolGeometry(s, yShape, ph, pw, sh, sw, pt, pl),
                           kind: kind, accumulate: accumulate)
        case .globalPool(let kind):
            globalPoolBackward(input: xs[0], dOutput: dy, dInput: dx, batch: s[0], pixels: s[1] * s[2], channels: s[3],
                               kind: kind, accumulate: accumulate)
        case .pad(let t, _, let l, _):
            zeroPad2dBackward(dOutput: dy, dInput: dx, input: s, output: yShape, top: t, left: l, accumulate: accumulate)
        case .crop(let t, let l):
            crop2dBackward(dOutput: dy, dInput: dx, input: s, output: yShape, top: t, left: l, accumulate: accumulate)
        case .upsample(let fh, let fw, let interpolation):
            upsample2dBackward(dOutput: dy, dInput: dx, input: s, factorH: fh, factorW: fw, interpolation: interpolation,
                               accumulate: accumulate)
        case .transpose(let perm):
            transposeBackward(dOutput: dy, dInput: dx, shape: s, permutation: perm, accumulate: accumulate)
        case .concat(let axis):
            var targets = [UnsafeMutablePointer<Float>?](repeating: nil, count: shapes.count)
            targets[k] = dx
            concatenateBackward(dOutput: dy, dInputs: targets, shapes: shapes, axis: axis, accumulate: accumulate)
        case .resize(let top, let left, let h, let w, let interpolation):
            resizeImagesBackward(dOutput: dy, dInput: dx, batch: s[0], height: s[1], width: s[2], channels: s[3],
                                 window: (top, left, h, w), outHeight: yShape[1], outWidth: yShape[2],
                                 interpolation: interpolation, accumulate: accumulate)
        case .slice(let window):
            stridedSliceBackward(dOutput: dy, dInput: dx, shape: s, window: window, accumulate: accumulate)
        }
    }
}

import Graph

/// Steps for the operations that move or combine data rather than multiply matrices.
extension CompiledPlan {
    func makeDataStep(_ i: Int, node: PlanNode, ins: [UnsafePointer<Float>], inShapes: [[Int]],
                      out: UnsafeMutablePointer<Float>, constant: @escaping (Int) -> UnsafePointer<Float>) -> () -> Void {
        let y = node.shape
        let n = node.count
        switch node.op {
        case .affine(_, _, let act):
            let scale = constant(0), shift = constant(1), c = y.last!
            return { channelAffine(ins[0], out, count: n, channels: c, scale: scale, shift: shift, activation: act) }
        case .pool(let kind, let ph, let pw, let sh, let sw, let pt, let pl):
            let x = inShapes[0]
            let g = Conv2DGeometry(batch: x[0], inH: x[1], inW: x[2], inC: x[3], outH: y[1], outW: y[2], outC: y[3],
                                   kernelH: ph, kernelW: pw, strideH: sh, strideW: sw, dilationH: 1, dilationW: 1,
                                   padTop: pt, padLeft: pl)
            return { pool2d(ins[0], out, geometry: g, kind: kind) }
        case .globalPool(let kind):
            let x = inShapes[0]
            return { globalPool(ins[0], out, batch: x[0], pixels: x[1] * x[2], channels: x[3], kind: kind) }
        case .pad(let t, _, let l, _):
            let x = inShapes[0]
            return { zeroPad2d(ins[0], out, input: x, output: y, top: t, left: l) }
        case .crop(let t, let l):
            let x = inShapes[0]
            return { crop2d(ins[0], out, input: x, output: y, top: t, left: l) }
        case .upsample(let fh, let fw, let interpolation):
            let x = inShapes[0]
            return { upsample2d(ins[0], out, input: x, factorH: fh, factorW: fw, interpolation: interpolation) }
        case .transpose(let perm):
            let x = inShapes[0]
            return { transpose(ins[0], out, shape: x, permutation: perm) }
        case .concat(let axis):
            return { concatenate(ins, inShapes, out, axis: axis) }
        case .merge(let kind):
            return { merge(ins, inShapes, out, outShape: y, kind: kind) }
        case .channelScale:
            let x = inShapes[0]
            return { channelScale(ins[0], scale: ins[1], out, batch: x[0], pixels: x[1] * x[2], channels: x[3]) }
        default:
            preconditionFailure("no data step for \(node.op)")
        }
    }
}

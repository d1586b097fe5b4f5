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
            return { DataOps.affine(ins[0], out, count: n, scale: scale, shift: shift, channels: c, activation: act) }
        case .move(let m):
            return { m.forward(ins, inShapes, out, y) }
        case .merge(let kind):
            return { DataOps.merge(kind, ins, inShapes, out, y) }
        case .channelScale:
            let x = inShapes[0]
            return { channelScale(ins[0], batch: x[0], spatial: x[1] * x[2], channels: x[3], scale: ins[1], output: out) }
        case .layerNorm(let dims, _, _, let epsilon, let rms):
            let g = LayerNormGeometry(shape: y, dims: dims)
            let gamma = constant(0), beta = constant(1)
            return { layerNormalization(ins[0], out, geometry: g, gamma: gamma, beta: beta, epsilon: epsilon, rms: rms) }
        case .dropout(let rate, let noiseShape, let key):
            let clock = noiseClock
            let maskShape = dropoutMaskShape(y, noiseShape)
            let count = maskShape.reduce(1, *)
            let mask = MaskStorage(count)
            let batchAxisFollows = noiseShape.map { $0.count != y.count || $0[0] < 0 } ?? true
            let perRow = batchAxisFollows && count > 0 ? count / maskShape[0] : 0
            let layerSeed = DropoutRandom.mix(key &+ 0x5EED_0FD2_0000)
            return {
                guard clock.active else { out.update(from: ins[0], count: n); return }
                dropoutMask(seed: clock.seed ^ layerSeed, step: UInt64(clock.step), rate: rate, mask: mask.pointer,
                            count: count, offset: clock.rowOffset * perRow)
                applyDropoutMask(ins[0], mask: mask.pointer, out, shape: y, maskShape: maskShape, accumulate: false)
            }
        case .augment(let spec, let key):
            let clock = noiseClock
            let x = inShapes[0]
            let single = augmentInferenceMove(spec, input: x, output: y)
            let one = ([1] + Array(x.dropFirst()), [1] + Array(y.dropFirst()))
            let inference: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void = { src, dst in
                if let single { single.forward([src], [one.0], dst, one.1) } else { dst.update(from: src, count: one.0.reduce(1, *)) }
            }
            return {
                guard clock.active else {
                    if let single { single.forward(ins, inShapes, out, y) } else { out.update(from: ins[0], count: n) }
                    return
                }
                augmentBatch(spec, key: key, seed: clock.seed, step: clock.step, rowOffset: clock.rowOffset, ins[0], shape: x,
                             into: out, outShape: y, inference: inference)
            }
        default:
            preconditionFailure("no data step for \(node.op)")
        }
    }
}

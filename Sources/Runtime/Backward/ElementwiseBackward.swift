// Backward of the element-wise operations (Ops/Elementwise.swift), channel last:
// - merge layers (Add, Subtract, Multiply, Average, Maximum, Minimum) with numpy broadcasting:
//   each input's gradient is summed over the axes it was broadcast along. Maximum/Minimum send
//   the gradient to the first input holding the extreme value (tf-keras folds the inputs left to
//   right through tf.maximum/tf.minimum, whose gradient gives ties to the left operand; checked).
// - channelScale (squeeze-and-excitation): y[b, p, c] = x[b, p, c] * s[b, c].
// channelAffine's backward is `channelAffineBackward` (EpilogueBackward.swift).
import Graph

/// Merge backward. `inputs`/`shapes` as the forward (shapes with the batch axis), `dInputs[k]`
/// nil when input k needs no gradient. Input values are read for multiply, maximum and minimum.
/// Overwrites each dInput, or adds into it when `accumulate`.
public func mergeBackward(inputs: [UnsafePointer<Float>], shapes: [[Int]], outShape: [Int], kind: MergeKind,
                          dOutput dy: UnsafePointer<Float>, dInputs: [UnsafeMutablePointer<Float>?],
                          accumulate: Bool) {
    precondition(inputs.count == shapes.count && dInputs.count == shapes.count && !shapes.isEmpty)
    let rank = outShape.count, count = outShape.reduce(1, *)
    if mergeBackwardFast(inputs: inputs, shapes: shapes, outShape: outShape, kind: kind, dOutput: dy,
                         dInputs: dInputs, accumulate: accumulate) { return }
    // Offsets of output index j in each input: strides with 0 on broadcast axes.
    let strides: [[Int]] = shapes.map { s in
        let padded = Array(repeating: 1, count: rank - s.count) + s
        var st = Array(repeating: 0, count: rank), acc = 1
        for d in stride(from: rank - 1, through: 0, by: -1) {
            st[d] = padded[d] == 1 && outShape[d] != 1 ? 0 : acc
            acc *= padded[d]
        }
        return st
    }
    let full = shapes.map { $0.reduce(1, *) == count }
    @inline(__always) func offset(_ k: Int, _ j: Int) -> Int {
        if full[k] { return j }
        var rem = j, off = 0
        for d in stride(from: rank - 1, through: 0, by: -1) {
            off += (rem % outShape[d]) * strides[k][d]
            rem /= outShape[d]
        }
        return off
    }
    /// d(output)/d(input k) at output element j, times dy[j].
    @inline(__always) func grad(_ k: Int, _ j: Int) -> Float {
        switch kind {
        case .add: return dy[j]
        case .subtract: return k == 0 ? dy[j] : -dy[j]
        case .average: return dy[j] / Float(inputs.count)
        case .multiply:
            var p = dy[j]
            for i in inputs.indices where i != k { p *= inputs[i][offset(i, j)] }
            return p
        case .maximum, .minimum:
            var best = inputs[0][offset(0, j)], at = 0
            for i in 1..<inputs.count {
                let v = inputs[i][offset(i, j)]
                if kind == .maximum ? v > best : v < best { best = v; at = i }
            }
            return at == k ? dy[j] : 0
        }
    }
    // Inputs of the output's shape: element-wise, in parallel.
    let direct = dInputs.indices.filter { dInputs[$0] != nil && full[$0] }
    if !direct.isEmpty {
        parallelFor(count, minChunk: 16_384) { _, range in
            for k in direct {
                let dst = dInputs[k]!
                for j in range { put(grad(k, j), dst + offset(k, j), accumulate: accumulate) }
            }
        }
    }
    // Broadcast inputs: several outputs feed one element, so sum serially.
    for k in dInputs.indices where dInputs[k] != nil && !full[k] {
        let dst = dInputs[k]!
        if !accumulate { dst.update(repeating: 0, count: shapes[k].reduce(1, *)) }
        for j in 0..<count { dst[offset(k, j)] += grad(k, j) }
    }
}

/// The merges training meets most, without the general path's per-element index arithmetic:
/// Add/Subtract/Average of same-shaped inputs (residual connections), and Multiply of
/// x [N, ..., C] by s [N, 1, ..., 1, C] (squeeze-and-excitation's excite, as Keras builds it:
/// Reshape then Multiply), which is `channelScaleBackward`. False when the case is not one of these.
private func mergeBackwardFast(inputs: [UnsafePointer<Float>], shapes: [[Int]], outShape: [Int], kind: MergeKind,
                               dOutput dy: UnsafePointer<Float>, dInputs: [UnsafeMutablePointer<Float>?],
                               accumulate: Bool) -> Bool {
    let count = outShape.reduce(1, *)
    if shapes.allSatisfy({ $0 == outShape }) && (kind == .add || kind == .subtract || kind == .average) {
        for k in dInputs.indices {
            guard let dst = dInputs[k] else { continue }
            let factor: Float = kind == .average ? 1 / Float(inputs.count) : (kind == .subtract && k == 1 ? -1 : 1)
            parallelFor(count, minChunk: 1 << 15) { _, r in
                var j = r.lowerBound
                while j + 8 <= r.upperBound {
                    put(load(dy + j) * factor, dst + j, accumulate: accumulate)
                    j += 8
                }
                if j < r.upperBound { putPartial(loadPartial(dy + j, r.upperBound - j) * factor, dst + j, r.upperBound - j, accumulate: accumulate) }
            }
        }
        return true
    }
    guard kind == .multiply, shapes.count == 2, outShape.count >= 2 else { return false }
    let n = outShape[0], channels = outShape[outShape.count - 1]
    let seShape = [n] + Array(repeating: 1, count: outShape.count - 2) + [channels]
    for (full, scale) in [(0, 1), (1, 0)] where shapes[full] == outShape && shapes[scale] == seShape {
        channelScaleBackward(input: inputs[full], scale: inputs[scale], dOutput: dy, batch: n,
                             pixels: count / max(1, n * channels), channels: channels,
                             dInput: dInputs[full], dScale: dInputs[scale], accumulate: accumulate)
        return true
    }
    return false
}

/// Backward of `channelScale` (y[b, p, c] = x[b, p, c] * s[b, c]): dInput = dy * s,
/// dScale[b, c] = Σ_p dy * x. Either output may be nil. Overwrites, or adds when `accumulate`.
public func channelScaleBackward(input x: UnsafePointer<Float>, scale s: UnsafePointer<Float>,
                                 dOutput dy: UnsafePointer<Float>, batch: Int, pixels: Int, channels C: Int,
                                 dInput: UnsafeMutablePointer<Float>?, dScale: UnsafeMutablePointer<Float>?,
                                 accumulate: Bool) {
    func image(_ b: Int) {
        let xb = x + b * pixels * C, dyb = dy + b * pixels * C, sb = s + b * C
        let dxb = dInput.map { $0 + b * pixels * C }
        @inline(__always) func row(_ p: Int, _ acc: UnsafeMutablePointer<Float>?) {
            let xr = xb + p * C, gr = dyb + p * C
            var c = 0
            while c < C {
                let n = min(8, C - c), full = n == 8
                let g = full ? load(gr + c) : loadPartial(gr + c, n)
                if let dxb {
                    let v = g * (full ? load(sb + c) : loadPartial(sb + c, n))
                    if full { put(v, dxb + p * C + c, accumulate: accumulate) }
                    else { putPartial(v, dxb + p * C + c, n, accumulate: accumulate) }
                }
                if let acc {
                    let v = g * (full ? load(xr + c) : loadPartial(xr + c, n))
                    if full { store(load(acc + c) + v, acc + c) } else { storePartial(loadPartial(acc + c, n) + v, acc + c, n) }
                }
                c += 8
            }
        }
        if let dScale {
            channelReduce(rows: pixels, channels: C, sums: 1, body: { range, acc in
                for p in range { row(p, acc) }
            }, finish: { putTotals($0, dScale + b * C, C, accumulate: accumulate) })
        } else {
            parallelFor(pixels, minChunk: max(1, 16_384 / max(1, C))) { _, range in
                for p in range { row(p, nil) }
            }
        }
    }
    // When one image's channel sums run on one worker anyway (squeeze-and-excitation over a
    // small map: EfficientNet's block5-7 have 225 and 64 pixels), the images go to the workers
    // instead of running one after another on the calling thread; each image's sums are the
    // same either way (`channelReduce` inside a parallel body runs inline, as one chunk).
    if dScale != nil && batch > 1 && channelReduceChunks(rows: pixels) == 1 {
        parallelFor(batch) { _, images in
            for b in images { image(b) }
        }
        return
    }
    for b in 0..<batch { image(b) }
}

/// The gradient of x [batch, pixels, C] read by both y = x * s[b, c] (channelScale) and a global
/// average pool: dInput = dy * s + dPool / pixels, written in one pass. The same two roundings
/// as channelScaleBackward's write followed by globalPoolBackward's add.
public func channelScaleAndPoolBackward(dOutput dy: UnsafePointer<Float>, scale s: UnsafePointer<Float>,
                                        dPool: UnsafePointer<Float>, batch: Int, pixels: Int, channels C: Int,
                                        dInput dx: UnsafeMutablePointer<Float>) {
    let inv = Vec(repeating: 1 / Float(max(1, pixels)))
    parallelFor(batch * pixels, minChunk: max(1, 16_384 / max(1, C))) { _, rows in
        for r in rows {
            let b = r / max(1, pixels), sb = s + b * C, gb = dPool + b * C, dyr = dy + r * C, dxr = dx + r * C
            var c = 0
            while c + 8 <= C {
                store(load(dyr + c) * load(sb + c) + load(gb + c) * inv, dxr + c)
                c += 8
            }
            if c < C {
                let n = C - c
                storePartial(loadPartial(dyr + c, n) * loadPartial(sb + c, n) + loadPartial(gb + c, n) * inv, dxr + c, n)
            }
        }
    }
}

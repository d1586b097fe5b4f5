import Graph
// Pooling over NHWC.
//   pool2d: input [N, inH, inW, C] -> output [N, outH, outW, C]; geometry from Conv2DGeometry with
//           kernel = pool_size, outC = inC, dilation 1 (Keras's strides default to pool_size:
//           the caller passes them).
//   global pools: input [N, S, C] (S = H*W) -> output [N, C].
// TensorFlow semantics under `same` padding: max ignores the padding; average divides by the
// number of real (non-padding) elements in each window, not by the window size.

// `PoolKind` (max, average) is Graph's, shared with the layer specs.

extension Conv2DGeometry {
    /// The window geometry of MaxPooling2D / AveragePooling2D: Keras's `strides` default to the
    /// pool size (pass nil for that), padding by the same TensorFlow rule as convolutions.
    public static func pooling(batch: Int, inH: Int, inW: Int, channels: Int, poolH: Int, poolW: Int,
                               strideH: Int? = nil, strideW: Int? = nil, padding: ConvPadding) -> Conv2DGeometry {
        Conv2DGeometry(batch: batch, inH: inH, inW: inW, inC: channels, outC: channels,
                       kernelH: poolH, kernelW: poolW, strideH: strideH ?? poolH, strideW: strideW ?? poolW,
                       padding: padding)
    }
}

/// MaxPooling2D / AveragePooling2D.
public func pool2d(_ kind: PoolKind, input: UnsafePointer<Float>, geometry g: Conv2DGeometry,
                   output: UnsafeMutablePointer<Float>) {
    precondition(g.inC == g.outC, "pooling keeps the channel count")
    let rows = g.batch * g.outH
    parallelFor(rows, minChunk: max(1, 16_384 / max(1, g.outW * g.outC * g.kernelH * g.kernelW))) { _, range in
        for row in range {
            let n = row / g.outH, oy = row % g.outH
            let ky = Conv2DGeometry.validTaps(oy, stride: g.strideH, pad: g.padTop, dilation: g.dilationH,
                                              kernel: g.kernelH, size: g.inH)
            for ox in 0..<g.outW {
                let kx = Conv2DGeometry.validTaps(ox, stride: g.strideW, pad: g.padLeft, dilation: g.dilationW,
                                                  kernel: g.kernelW, size: g.inW)
                let origin = input + ((n * g.inH + oy * g.strideH - g.padTop) * g.inW
                                      + ox * g.strideW - g.padLeft) * g.inC
                let out = output + ((n * g.outH + oy) * g.outW + ox) * g.outC
                poolPixel(kind, origin, ky, kx, out, g)
            }
        }
    }
}

@inline(__always)
private func poolPixel(_ kind: PoolKind, _ origin: UnsafePointer<Float>, _ ky: Range<Int>, _ kx: Range<Int>,
                       _ out: UnsafeMutablePointer<Float>, _ g: Conv2DGeometry) {
    let C = g.inC
    let rowStep = g.dilationH * g.inW * C, colStep = g.dilationW * C
    let count = Float(ky.count * kx.count)
    var c = 0
    while c < C {
        let lanes = min(8, C - c)
        var acc = Vec(repeating: kind == .max ? -.infinity : 0)
        for i in ky {
            var p = origin + i * rowStep + kx.lowerBound * colStep + c
            for _ in kx {
                let v = lanes == 8 ? load(p) : loadPartial(p, lanes)
                acc = kind == .max ? vmax(acc, v) : acc + v
                p += colStep
            }
        }
        // A window entirely in the padding (only possible with explicit geometries) gives 0.
        if count == 0 { acc = Vec() } else if kind == .average { acc = acc / count }
        if lanes == 8 { store(acc, out + c) } else { storePartial(acc, out + c, lanes) }
        c += 8
    }
}

/// GlobalAveragePooling2D: [N, S, C] -> [N, C], the mean over S (summed in blocks of 64 rows so
/// the float rounding grows with the block count, not with S).
public func globalAveragePool(input: UnsafePointer<Float>, batch: Int, spatial: Int, channels: Int,
                              output: UnsafeMutablePointer<Float>) {
    globalPool(input, batch, spatial, channels, output, isMax: false)
}

/// GlobalMaxPooling2D: [N, S, C] -> [N, C], the max over S.
public func globalMaxPool(input: UnsafePointer<Float>, batch: Int, spatial: Int, channels: Int,
                          output: UnsafeMutablePointer<Float>) {
    globalPool(input, batch, spatial, channels, output, isMax: true)
}

/// Rows per float partial sum of a global pool (the training plan's fused squeeze sums the same way).
let globalPoolBlockRows = 64

private func globalPool(_ x: UnsafePointer<Float>, _ batch: Int, _ s: Int, _ c: Int,
                        _ y: UnsafeMutablePointer<Float>, isMax: Bool) {
    guard batch > 0, c > 0 else { return }
    // Items are (image, block of 64 channels), so one image (squeeze-and-excitation at batch 1)
    // is shared among the workers too; each channel's sum runs in the same order either way.
    let block = 64, blocks = (c + block - 1) / block
    parallelFor(batch * blocks, minChunk: max(1, 65_536 / max(1, s * block))) { _, range in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { partialBuffer in
            let partial = partialBuffer.baseAddress!
            for item in range {
                let n = item / blocks, c0 = (item % blocks) * block, width = min(block, c - c0)
                let image = x + n * s * c + c0, out = y + n * c + c0
                out.update(repeating: isMax ? -.infinity : 0, count: width)
                var s0 = 0
                while s0 < s {
                    let s1 = min(s, s0 + globalPoolBlockRows)
                    partial.update(repeating: isMax ? -.infinity : 0, count: width)
                    for r in s0..<s1 { accumulateRow(image + r * c, partial, width, isMax) }
                    accumulateRow(partial, out, width, isMax)
                    s0 = s1
                }
                if !isMax && s > 0 {
                    let sf = Float(s)      // divide, as the mean is defined, rather than * (1/s)
                    for j in 0..<width { out[j] /= sf }
                }
            }
        }
    }
}

/// acc[j] = acc[j] + row[j] (or max) over c floats.
@inline(__always)
private func accumulateRow(_ row: UnsafePointer<Float>, _ acc: UnsafeMutablePointer<Float>, _ c: Int, _ isMax: Bool) {
    var j = 0
    if isMax {
        while j + 8 <= c { store(vmax(load(acc + j), load(row + j)), acc + j); j += 8 }
        while j < c { acc[j] = max(acc[j], row[j]); j += 1 }
    } else {
        while j + 8 <= c { store(load(acc + j) + load(row + j), acc + j); j += 8 }
        while j < c { acc[j] += row[j]; j += 1 }
    }
}

@inline(__always)
private func accumulateRow(_ row: UnsafeMutablePointer<Float>, _ acc: UnsafeMutablePointer<Float>, _ c: Int, _ isMax: Bool) {
    accumulateRow(UnsafePointer(row), acc, c, isMax)
}

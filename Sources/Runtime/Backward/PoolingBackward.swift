// Pooling backward over NHWC, as the forward (Ops/Pooling.swift): input [N, H, W, C] ->
// output [N, outH, outW, C] (window pooling, `Conv2DGeometry` with outC = inC), or [N, C] (global).
// TensorFlow's gradients, checked against tf-keras 2.21:
// - max pooling sends each window's gradient to the window's first maximum in row-major window
//   order (a tie does not split); positions in the padding never win.
// - average pooling spreads dy / count over the window, count = window positions inside the input.
// - global max pooling (reduce_max) splits a tie equally among all maximal positions.
// - global average: dy / pixels everywhere.
// Windows overlap, so window pooling scatters: workers take whole images, or channel slices of
// them when there are fewer images than workers; no two write the same element.
import Graph

/// Window pooling backward. `input` is the forward's input (read for max pooling only; may be
/// nil for average). Overwrites dInput, or adds into it when `accumulate`.
public func pool2dBackward(input x: UnsafePointer<Float>?, dOutput dy: UnsafePointer<Float>,
                           dInput dx: UnsafeMutablePointer<Float>, geometry g: Conv2DGeometry, kind: PoolKind,
                           accumulate: Bool) {
    precondition(kind == .average || x != nil, "max pooling backward needs the forward input")
    if !accumulate { zeroFill(dx, g.inputCount) }
    let threads = RuntimeThreads.count
    let slices = g.batch >= threads ? 1 : min(max(1, (g.inC + 7) / 8), threads)
    parallelForStatic(g.batch * slices, threads: threads) { _, items in
        for item in items {
            let n = item / slices, s = item % slices
            // Channel slices in multiples of 8 lanes.
            let blocks = (g.inC + 7) / 8
            let c0 = min(g.inC, (blocks * s / slices) * 8), c1 = min(g.inC, (blocks * (s + 1) / slices) * 8)
            if c0 < c1 { poolImageBackward(x, dy, dx, g, kind, n: n, channels: c0..<c1) }
        }
    }
}

private func poolImageBackward(_ x: UnsafePointer<Float>?, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                               _ g: Conv2DGeometry, _ kind: PoolKind, n: Int, channels: Range<Int>) {
    let C = g.inC
    let image = (n * g.inH * g.inW) * C
    for oy in 0..<g.outH {
        let y0 = oy * g.strideH - g.padTop
        let ky0 = max(0, -y0), ky1 = max(ky0, min(g.kernelH, g.inH - y0))
        for ox in 0..<g.outW {
            let x0 = ox * g.strideW - g.padLeft
            let kx0 = max(0, -x0), kx1 = max(kx0, min(g.kernelW, g.inW - x0))
            guard ky0 < ky1, kx0 < kx1 else { continue }
            let gy = dy + ((n * g.outH + oy) * g.outW + ox) * C
            var c = channels.lowerBound
            while c < channels.upperBound {
                let lanes = min(8, channels.upperBound - c)
                let d = loadPartial(gy + c, lanes)
                if kind == .average {
                    let share = d * (1 / Float((ky1 - ky0) * (kx1 - kx0)))
                    for ky in ky0..<ky1 {
                        for kx in kx0..<kx1 {
                            let p = dx + image + ((y0 + ky) * g.inW + x0 + kx) * C + c
                            storePartial(loadPartial(p, lanes) + share, p, lanes)
                        }
                    }
                } else {
                    // First maximum in window order: strictly greater replaces.
                    let first = image + ((y0 + ky0) * g.inW + x0 + kx0) * C + c
                    var best = loadPartial(x! + first, lanes)
                    var at = SIMD8<Int>(repeating: first)
                    for ky in ky0..<ky1 {
                        for kx in kx0..<kx1 {
                            let off = image + ((y0 + ky) * g.inW + x0 + kx) * C + c
                            let v = loadPartial(x! + off, lanes)
                            let better = v .> best
                            best = best.replacing(with: v, where: better)
                            for l in 0..<lanes where better[l] { at[l] = off }
                        }
                    }
                    for l in 0..<lanes { dx[at[l] + l] += d[l] }
                }
                c += 8
            }
        }
    }
}

/// Global pooling backward: [N, C] -> [N, pixels, C]. Max needs the forward input (ties split
/// equally, as TensorFlow's reduce_max gradient). Overwrites dInput, or adds when `accumulate`.
public func globalPoolBackward(input x: UnsafePointer<Float>?, dOutput dy: UnsafePointer<Float>,
                               dInput dx: UnsafeMutablePointer<Float>, batch: Int, pixels: Int, channels C: Int,
                               kind: PoolKind, accumulate: Bool) {
    precondition(kind == .average || x != nil, "global max pooling backward needs the forward input")
    parallelFor(batch * pixels, minChunk: max(1, 16_384 / max(1, C))) { _, rows in
        guard kind == .max else {
            let inv = 1 / Float(max(1, pixels))
            for r in rows {
                let g = dy + (r / pixels) * C, dst = dx + r * C
                for c in 0..<C { put(g[c] * inv, dst + c, accumulate: accumulate) }
            }
            return
        }
        // Per row's image: the maximum and how many positions reach it (recomputed per chunk of
        // rows; a chunk spans at most a few images).
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * C) { buf in
            let m = buf.baseAddress!, count = m + C
            var current = -1
            for r in rows {
                let b = r / pixels
                if b != current {
                    current = b
                    let src = x! + b * pixels * C
                    for c in 0..<C { m[c] = src[c]; count[c] = 1 }
                    for p in 1..<max(1, pixels) {
                        let row = src + p * C
                        for c in 0..<C {
                            if row[c] > m[c] { m[c] = row[c]; count[c] = 1 } else if row[c] == m[c] { count[c] += 1 }
                        }
                    }
                }
                let g = dy + b * C, xr = x! + r * C, dst = dx + r * C
                for c in 0..<C { put(xr[c] == m[c] ? g[c] / count[c] : 0, dst + c, accumulate: accumulate) }
            }
        }
    }
}

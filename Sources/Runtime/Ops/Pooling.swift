// Pooling over NHWC: input [N, H, W, C] -> output [N, outH, outW, C] (window pooling) or [N, C]
// (global pooling). TensorFlow's semantics: average pooling divides by the number of window
// positions inside the input (padding excluded); max pooling ignores padding.
import Graph

func pool2d(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, geometry g: Conv2DGeometry, kind: PoolKind) {
    let c = g.inC
    parallelFor(g.batch * g.outH) { _, rows in
        for row in rows {
            let b = row / g.outH, oy = row % g.outH
            let y0 = oy * g.strideH - g.padTop
            let ky0 = max(0, -y0), ky1 = min(g.kernelH, g.inH - y0)
            for ox in 0..<g.outW {
                let x0 = ox * g.strideW - g.padLeft
                let kx0 = max(0, -x0), kx1 = min(g.kernelW, g.inW - x0)
                let dst = y + ((b * g.outH + oy) * g.outW + ox) * c
                let initial: Float = kind == .max ? -.infinity : 0
                for ch in 0..<c { dst[ch] = initial }
                for ky in ky0..<max(ky0, ky1) {
                    for kx in kx0..<max(kx0, kx1) {
                        let src = x + ((b * g.inH + y0 + ky) * g.inW + x0 + kx) * c
                        if kind == .max {
                            for ch in 0..<c { dst[ch] = max(dst[ch], src[ch]) }
                        } else {
                            for ch in 0..<c { dst[ch] += src[ch] }
                        }
                    }
                }
                if kind == .average {
                    let inv = 1 / Float(max(1, (ky1 - ky0) * (kx1 - kx0)))
                    for ch in 0..<c { dst[ch] *= inv }
                }
            }
        }
    }
}

/// [N, pixels, C] -> [N, C]: mean or max over the pixels.
func globalPool(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, batch: Int, pixels: Int,
                channels c: Int, kind: PoolKind) {
    parallelFor(batch) { _, items in
        for b in items {
            let dst = y + b * c
            let src = x + b * pixels * c
            if kind == .max {
                for ch in 0..<c { dst[ch] = src[ch] }
                for p in 1..<max(1, pixels) {
                    let row = src + p * c
                    for ch in 0..<c { dst[ch] = max(dst[ch], row[ch]) }
                }
            } else {
                // Accumulate in Double: EfficientNet averages up to 114*114 values per channel.
                var sum = [Double](repeating: 0, count: c)
                for p in 0..<pixels {
                    let row = src + p * c
                    for ch in 0..<c { sum[ch] += Double(row[ch]) }
                }
                let inv = 1 / Double(max(1, pixels))
                for ch in 0..<c { dst[ch] = Float(sum[ch] * inv) }
            }
        }
    }
}

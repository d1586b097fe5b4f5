// Backward of LayerNormalization (forward in Kernels/LayerNorm.swift) and of ConvNeXt's LayerScale.
// LayerNormalization, per group of n normalized values, with xhat = (x - mean) * inv and
// g = dy * gamma:
//     dBeta[r] += dy,  dGamma[r] += dy * xhat,
//     dx = inv * (g - mean(g) - xhat * mean(g * xhat))
// (the mean and inv are recomputed from x: one pass more, no cache to keep between the passes).
// LayerScale y = x * gamma[c] over the last axis: dx = dy * gamma[c], dGamma[c] += Σ dy * x.
// Parameter gradients are written (or added, `accumulateParams`) serially over the groups, so
// the sums do not depend on the thread count.

func layerNormBackward(input x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, geometry g: LayerNormGeometry,
                       gamma: UnsafePointer<Float>?, epsilon: Float, dInput dx: UnsafeMutablePointer<Float>?,
                       accumulate: Bool, dGamma: UnsafeMutablePointer<Float>?, dBeta: UnsafeMutablePointer<Float>?,
                       accumulateParams: Bool) {
    let n = g.reduced
    var sumGamma = [Double](repeating: 0, count: dGamma == nil ? 0 : n)
    var sumBeta = [Double](repeating: 0, count: dBeta == nil ? 0 : n)
    var scaled = [Float](repeating: 0, count: n), xhat = [Float](repeating: 0, count: n)
    for k in 0..<g.groups {
        let (mean, inv) = g.moments(x, group: k, epsilon: epsilon)
        let base = g.groupOffset[k]
        var meanG = 0.0, meanGX = 0.0
        for r in 0..<n {
            let o = base + g.reducedOffset[r]
            xhat[r] = (x[o] - mean) * inv
            scaled[r] = dy[o] * (gamma?[r] ?? 1)
            meanG += Double(scaled[r])
            meanGX += Double(scaled[r]) * Double(xhat[r])
            if dGamma != nil { sumGamma[r] += Double(dy[o]) * Double(xhat[r]) }
            if dBeta != nil { sumBeta[r] += Double(dy[o]) }
        }
        guard let dx else { continue }
        let mg = Float(meanG / Double(n)), mgx = Float(meanGX / Double(n))
        for r in 0..<n {
            let o = base + g.reducedOffset[r]
            let v = inv * (scaled[r] - mg - xhat[r] * mgx)
            dx[o] = accumulate ? dx[o] + v : v
        }
    }
    if let dGamma { for r in 0..<n { dGamma[r] = (accumulateParams ? dGamma[r] : 0) + Float(sumGamma[r]) } }
    if let dBeta { for r in 0..<n { dBeta[r] = (accumulateParams ? dBeta[r] : 0) + Float(sumBeta[r]) } }
}

/// y = x * gamma[c] over the last axis of `count` values.
func layerScale(_ x: UnsafePointer<Float>, gamma: UnsafePointer<Float>, channels c: Int, count: Int,
                _ y: UnsafeMutablePointer<Float>) {
    for i in 0..<count { y[i] = x[i] * gamma[i % c] }
}

func layerScaleBackward(input x: UnsafePointer<Float>, dOutput dy: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
                        channels c: Int, count: Int, dInput dx: UnsafeMutablePointer<Float>?, accumulate: Bool,
                        dGamma: UnsafeMutablePointer<Float>?, accumulateParams: Bool) {
    if let dGamma {
        var sums = [Double](repeating: 0, count: c)
        for i in 0..<count { sums[i % c] += Double(dy[i]) * Double(x[i]) }
        for j in 0..<c { dGamma[j] = (accumulateParams ? dGamma[j] : 0) + Float(sums[j]) }
    }
    if let dx {
        for i in 0..<count { dx[i] = (accumulate ? dx[i] : 0) + dy[i] * gamma[i % c] }
    }
}

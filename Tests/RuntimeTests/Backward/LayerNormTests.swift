import XCTest
import Graph
import TestSupport
@testable import Runtime

/// LayerNormalization over several axis sets and ConvNeXt's LayerScale: forward against a Double
/// reference, backward against central differences of that reference. (Real Keras's numbers:
/// the k2/k3_layer_norm_axes and convnext_tiny fixtures.)
final class LayerNormTests: BackwardTestCase {
    /// Per group of the axes not in `dims`: (x - mean) / sqrt(var + eps) * gamma + beta, or with
    /// `rms` x / sqrt(var + eps) * gamma; gamma/beta indexed over `dims` in the input's order.
    func reference(_ x: [Float], shape: [Int], dims: [Int], gamma: [Float]?, beta: [Float]?, eps: Float,
                   rms: Bool = false) -> [Double] {
        let strides = (0..<shape.count).map { shape[($0 + 1)...].reduce(1, *) }
        func index(_ flat: Int) -> [Int] { (0..<shape.count).map { flat / strides[$0] % shape[$0] } }
        let keptKey = { (i: Int) in index(i).enumerated().filter { !dims.contains($0.offset) }.map(\.element) }
        let reducedIndex = { (i: Int) in
            dims.reduce(0) { acc, d in acc * shape[d] + index(i)[d] }
        }
        var groups: [[Int]: [Int]] = [:]
        for i in x.indices { groups[keptKey(i), default: []].append(i) }
        var y = [Double](repeating: 0, count: x.count)
        for members in groups.values {
            let n = Double(members.count)
            let mean = members.reduce(0) { $0 + Double(x[$1]) } / n
            let variance = members.reduce(0) { $0 + (Double(x[$1]) - mean) * (Double(x[$1]) - mean) } / n
            let inv = 1 / (variance + Double(eps)).squareRoot()
            for i in members {
                let r = reducedIndex(i)
                let g = Double(gamma?[r] ?? 1), b = Double(beta?[r] ?? 0)
                y[i] = rms ? Double(x[i]) * inv * g : (Double(x[i]) - mean) * inv * g + b
            }
        }
        return y
    }

    func check(shape: [Int], dims: [Int], center: Bool, scale: Bool, accumulate: Bool = false, seed: UInt64) {
        var rng = SeededRandom(seed)
        let count = shape.reduce(1, *), n = dims.map { shape[$0] }.reduce(1, *)
        let x = rng.floats(count).map { $0 * 2 + 0.5 }, w = rng.floats(count)
        let gamma = scale ? rng.floats(n, 0.5, 1.5) : nil, beta = center ? rng.floats(n) : nil
        let eps: Float = 1e-3
        let name = "LayerNorm \(shape) over \(dims) center \(center) scale \(scale) accumulate \(accumulate)"
        let g = LayerNormGeometry(shape: shape, dims: dims)
        let ones = Buf([Float](repeating: 1, count: n)), zeros = Buf([Float](repeating: 0, count: n))
        let xb = Buf(x), gb = gamma.map { Buf($0) }, y = Buf(count: count)
        layerNormalization(xb.c, y.p, geometry: g, gamma: gb?.c ?? ones.c, beta: beta.map { Buf($0).c } ?? zeros.c,
                           epsilon: eps, rms: false)
        assertClose(y.array, reference(x, shape: shape, dims: dims, gamma: gamma, beta: beta, eps: eps), tolerance: 2e-5,
                    "\(name) y")

        let dx = Buf(count: count, fill: 0), dg = Buf(count: n, fill: 0), db = Buf(count: n, fill: 0)
        for _ in 0..<(accumulate ? 2 : 1) {
            layerNormBackward(input: xb.c, dOutput: Buf(w).c, geometry: g, gamma: gb?.c, epsilon: eps, dInput: dx.p,
                              accumulate: accumulate, dGamma: scale ? dg.p : nil, dBeta: center ? db.p : nil,
                              accumulateParams: accumulate)
        }
        let k: Float = accumulate ? 0.5 : 1
        checkGradient("\(name) dInput", at: x, analytic: dx.array.map { $0 * k }, h: 1e-3, tolerance: 1e-4) {
            weightedSum(reference($0, shape: shape, dims: dims, gamma: gamma, beta: beta, eps: eps), w)
        }
        if let gamma {
            checkGradient("\(name) dGamma", at: gamma, analytic: dg.array.map { $0 * k }, h: 1e-3, tolerance: 1e-4) {
                weightedSum(reference(x, shape: shape, dims: dims, gamma: $0, beta: beta, eps: eps), w)
            }
        }
        if let beta {
            checkGradient("\(name) dBeta", at: beta, analytic: db.array.map { $0 * k }, h: 1e-3, tolerance: 1e-4) {
                weightedSum(reference(x, shape: shape, dims: dims, gamma: gamma, beta: $0, eps: eps), w)
            }
        }
    }

    func testLastAxis() {
        check(shape: [3, 2, 2, 5], dims: [3], center: true, scale: true, seed: 1)
        check(shape: [4, 7], dims: [1], center: false, scale: true, seed: 2)
        check(shape: [3, 2, 2, 5], dims: [3], center: true, scale: true, accumulate: true, seed: 3)
    }

    func testOtherAxes() {
        check(shape: [2, 3, 4, 5], dims: [1, 2], center: true, scale: true, seed: 4)
        check(shape: [2, 3, 4, 5], dims: [1, 2, 3], center: false, scale: true, seed: 5)
        check(shape: [2, 3, 4, 5], dims: [2], center: true, scale: false, seed: 6)
        check(shape: [2, 3, 4, 5], dims: [2, 3], center: false, scale: false, seed: 7)
    }

    func testRMSScalingKeepsTheCentredVarianceButNotTheMean() {
        var rng = SeededRandom(8)
        let shape = [3, 6], x = rng.floats(18).map { $0 + 2 }, gamma = rng.floats(6, 0.5, 1.5)
        let y = Buf(count: 18)
        layerNormalization(Buf(x).c, y.p, geometry: LayerNormGeometry(shape: shape, dims: [1]), gamma: Buf(gamma).c,
                           beta: Buf([Float](repeating: 9, count: 6)).c, epsilon: 1e-3, rms: true)
        assertClose(y.array, reference(x, shape: shape, dims: [1], gamma: gamma, beta: nil, eps: 1e-3, rms: true),
                    tolerance: 2e-5, "rms_scaling")
    }

    func testLayerScale() {
        var rng = SeededRandom(9)
        let c = 5, count = 4 * c
        let x = rng.floats(count), gamma = rng.floats(c, 0.5, 1.5), w = rng.floats(count)
        func reference(_ x: [Float], _ g: [Float]) -> [Double] { x.indices.map { Double(x[$0]) * Double(g[$0 % c]) } }
        let y = Buf(count: count)
        layerScale(Buf(x).c, gamma: Buf(gamma).c, channels: c, count: count, y.p)
        assertClose(y.array, reference(x, gamma), tolerance: 1e-6, "LayerScale y")
        let dx = Buf(count: count, fill: 0), dg = Buf(count: c, fill: 0)
        layerScaleBackward(input: Buf(x).c, dOutput: Buf(w).c, gamma: Buf(gamma).c, channels: c, count: count,
                           dInput: dx.p, accumulate: false, dGamma: dg.p, accumulateParams: false)
        checkGradient("LayerScale dInput", at: x, analytic: dx.array, h: 1e-3, tolerance: 1e-4) { weightedSum(reference($0, gamma), w) }
        checkGradient("LayerScale dGamma", at: gamma, analytic: dg.array, h: 1e-3, tolerance: 1e-4) { weightedSum(reference(x, $0), w) }
    }
}

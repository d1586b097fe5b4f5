import XCTest
import Graph
import TestSupport
@testable import Runtime

final class DenseTests: XCTestCase {
    func referenceDense(_ x: [Float], rows: Int, inF: Int, _ w: [Float], outF: Int) -> [Double] {
        var y = [Double](repeating: 0, count: rows * outF)
        for r in 0..<rows { for o in 0..<outF {
            var acc = 0.0
            for i in 0..<inF { acc += Double(x[r * inF + i]) * Double(w[i * outF + o]) }
            y[r * outF + o] = acc
        }}
        return y
    }

    func testDenseMatchesReference() {
        var rng = SeededRandom(4)
        // batch 1 with wide output (column split), a few rows, many rows (row tiles), odd sizes
        for (rows, inF, outF) in [(1, 300, 500), (1, 5, 3), (3, 17, 13), (37, 129, 70), (2000, 24, 10), (9, 64, 1000)] {
            let x = rng.floats(rows * inF), w = rng.floats(inF * outF), bias = rng.floats(outF)
            let scale = rng.floats(outF, 0.5, 2)
            let acc = referenceDense(x, rows: rows, inF: inF, w, outF: outF)
            let residual = rng.floats(rows * outF)
            for (s, b, r, act) in [(nil, bias, nil, ActivationSpec.linear), (nil, bias, nil, ActivationSpec(.softmax)),
                                   (scale, bias, nil, .relu6), (scale, nil, nil, ActivationSpec(.tanh)),
                                   (nil, nil, nil, ActivationSpec(.gelu)), (nil, bias, residual, .relu)]
                    as [([Float]?, [Float]?, [Float]?, ActivationSpec)] {
                var y = [Float](repeating: .nan, count: rows * outF)
                let sv = s ?? [], bv = b ?? [], rv = r ?? []
                x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in
                sv.withUnsafeBufferPointer { sp in bv.withUnsafeBufferPointer { bp in rv.withUnsafeBufferPointer { rp in
                y.withUnsafeMutableBufferPointer { yp in
                    dense(input: xp.baseAddress!, rows: rows, inFeatures: inF, kernel: wp.baseAddress!,
                          outFeatures: outF, output: yp.baseAddress!,
                          epilogue: Epilogue(scale: s == nil ? nil : sp.baseAddress,
                                             shift: b == nil ? nil : bp.baseAddress,
                                             residual: r == nil ? nil : rp.baseAddress, activation: act))
                }}}}}}
                let want = referenceEpilogue(acc, channels: outF, scale: s, shift: b, act, residual: r)
                assertClose(y, want, tolerance: 1e-4 * Double(max(1, inF / 64)), "rows \(rows) in \(inF) out \(outF) \(act.kind) residual:\(r != nil)")
            }
        }
    }
}

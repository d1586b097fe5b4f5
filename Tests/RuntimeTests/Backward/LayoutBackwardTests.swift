import XCTest
import Graph
import TestSupport
@testable import Runtime

/// Layout gradients against central differences of the float forwards. All are linear (data
/// movement, or bilinear weights), so h = 0.5 is exact up to the float forward's rounding;
/// tolerance 1e-5 of the largest gradient.
final class LayoutBackwardTests: BackwardTestCase {
    func check(_ name: String, inCount: Int, outCount: Int, seed: UInt64,
               forward: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void,
               backward: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Bool) -> Void) {
        checkLinearMapGradient(name, inCount: inCount, outCount: outCount, seed: seed, forward: forward, backward: backward)
    }

    func testPadCropUpsample() {
        let s = [2, 5, 6, 3]
        let padded = [2, 5 + 1 + 2, 6 + 3 + 0, 3]
        check("zero pad", inCount: s.reduce(1, *), outCount: padded.reduce(1, *), seed: 1,
              forward: { DataOps.pad(top: 1, bottom: 2, left: 3, right: 0, $0, s, $1) },
              backward: { zeroPad2dBackward(dOutput: $0, dInput: $1, input: s, output: padded, top: 1, left: 3, accumulate: $2) })
        let cropped = [2, 3, 3, 3]
        check("crop", inCount: s.reduce(1, *), outCount: cropped.reduce(1, *), seed: 2,
              forward: { DataOps.crop(top: 1, left: 2, $0, s, $1, cropped) },
              backward: { crop2dBackward(dOutput: $0, dInput: $1, input: s, output: cropped, top: 1, left: 2, accumulate: $2) })
        for interpolation in [Interpolation.nearest, .bilinear] {
            for (fh, fw) in [(2, 2), (3, 2)] {
                check("upsample \(interpolation) \(fh)x\(fw)", inCount: s.reduce(1, *),
                      outCount: s[0] * s[1] * fh * s[2] * fw * s[3], seed: 3,
                      forward: { DataOps.upsample(sizeH: fh, sizeW: fw, interpolation, $0, s, $1) },
                      backward: { upsample2dBackward(dOutput: $0, dInput: $1, input: s, factorH: fh, factorW: fw,
                                                     interpolation: interpolation, accumulate: $2) })
            }
        }
    }

    func testTransposeConcatenateIdentity() {
        let shape = [2, 3, 4, 5]
        for perm in [[0, 2, 1, 3], [0, 3, 1, 2], [3, 2, 1, 0]] {
            check("transpose \(perm)", inCount: 120, outCount: 120, seed: 4,
                  forward: { transpose(input: $0, shape: shape, perm: perm, output: $1) },
                  backward: { transposeBackward(dOutput: $0, dInput: $1, shape: shape, permutation: perm, accumulate: $2) })
        }
        check("identity", inCount: 77, outCount: 77, seed: 5,
              forward: { $1.update(from: $0, count: 77) },
              backward: { identityBackward(dOutput: $0, dInput: $1, count: 77, accumulate: $2) })

        // Concatenate along axis 2 of [2, 3, *, 4]; each input's gradient is its slice.
        let shapes = [[2, 3, 2, 4], [2, 3, 5, 4], [2, 3, 1, 4]]
        let out = [2, 3, 8, 4]
        var rng = SeededRandom(6)
        let xs = shapes.map { rng.floats($0.reduce(1, *)) }, w = rng.floats(out.reduce(1, *))
        let grads = shapes.map { Buf(count: $0.reduce(1, *)) }
        concatenateBackward(dOutput: Buf(w).c, dInputs: grads.map { $0.p }, shapes: shapes, axis: 2, accumulate: false)
        for k in shapes.indices {
            checkGradient("concatenate input \(k)", at: xs[k], analytic: grads[k].array, h: 0.5, tolerance: 1e-6) { xk in
                var inputs = xs
                inputs[k] = xk
                let y = Buf(count: out.reduce(1, *))
                DataOps.concat(axis: 2, inputs.map { Buf($0).c }, shapes, y.p)
                return weightedSum(y.array, w)
            }
        }
    }
}

/// The layout check (see LayoutBackwardTests): the backward of a linear map `forward` against
/// central differences of the float forward, then `accumulate` adding.
func checkLinearMapGradient(_ name: String, inCount: Int, outCount: Int, seed: UInt64,
                        forward: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void,
                        backward: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Bool) -> Void) {
    var rng = SeededRandom(seed)
    let x = rng.floats(inCount), w = rng.floats(outCount)
    let dx = Buf(count: inCount)
    backward(Buf(w).c, dx.p, false)
    checkGradient(name, at: x, analytic: dx.array, h: 0.5, tolerance: 1e-5, probes: 60) {
        let y = Buf(count: outCount)
        forward(Buf($0).c, y.p)
        return weightedSum(y.array, w)
    }
    let once = dx.array
    backward(Buf(w).c, dx.p, true)
    assertClose(dx.array, once.map { 2 * $0 }, tolerance: 1e-6, "\(name) accumulate")
}

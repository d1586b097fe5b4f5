// Softmax and log-softmax backward along one axis of a row-major tensor viewed as
// [outer, axisLength, inner] (as Kernels/Softmax.swift), from the forward's output y:
//   softmax:      dx = y * (dy - Σ_axis dy * y)
//   log_softmax:  dx = dy - softmax(x) * Σ_axis dy,  softmax(x) = e^y
// Both need only y, so the forward may run in place.
import Foundation

/// Softmax backward. Overwrites dInput, or adds into it when `accumulate`; dInput may be dOutput.
public func softmaxBackward(output y: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
                            dInput: UnsafeMutablePointer<Float>, outer: Int, axisLength: Int, inner: Int,
                            accumulate: Bool) {
    axisBackward(y, dOutput, dInput, outer, axisLength, inner, accumulate, log: false)
}

/// Log-softmax backward from its output (log-probabilities). Same conventions.
public func logSoftmaxBackward(output y: UnsafePointer<Float>, dOutput: UnsafePointer<Float>,
                               dInput: UnsafeMutablePointer<Float>, outer: Int, axisLength: Int, inner: Int,
                               accumulate: Bool) {
    axisBackward(y, dOutput, dInput, outer, axisLength, inner, accumulate, log: true)
}

/// Scalar over the axis, vectorised by the compiler where it can: softmax widths are class counts
/// (a few to a thousand), a negligible cost next to the layers before them.
private func axisBackward(_ y: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>,
                          _ outer: Int, _ n: Int, _ inner: Int, _ accumulate: Bool, log: Bool) {
    guard outer > 0, n > 0, inner > 0 else { return }
    parallelForStatic(outer, minChunk: max(1, 16_384 / (n * inner))) { _, range in
        for o in range {
            for i in 0..<inner {
                let base = o * n * inner + i
                var s: Double = 0
                for a in 0..<n {
                    let k = base + a * inner
                    s += log ? Double(dy[k]) : Double(dy[k]) * Double(y[k])
                }
                let sf = Float(s)
                for a in 0..<n {
                    let k = base + a * inner
                    let g = log ? dy[k] - Foundation.exp(y[k]) * sf : y[k] * (dy[k] - sf)
                    put(g, dx + k, accumulate: accumulate)
                }
            }
        }
    }
}

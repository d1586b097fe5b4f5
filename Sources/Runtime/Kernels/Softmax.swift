// Softmax along one axis of a row-major tensor viewed as [outer, axisLength, inner]
// (axis -1 of [N, C] is outer N, axisLength C, inner 1). Max-subtracted so exp never overflows.

/// In place: x[o, :, i] = exp(x - max) / sum(exp(x - max)) along the middle axis.
public func softmax(_ x: UnsafeMutablePointer<Float>, outer: Int, axisLength: Int, inner: Int) {
    guard outer > 0, axisLength > 0, inner > 0 else { return }
    parallelFor(outer, minChunk: max(1, 16_384 / (axisLength * inner))) { _, range in
        for o in range {
            let base = x + o * axisLength * inner
            if inner == 1 { softmaxContiguous(base, axisLength) } else { softmaxStrided(base, axisLength, inner) }
        }
    }
}

/// Softmax over n contiguous floats.
@inline(__always)
private func softmaxContiguous(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    var mv = Vec(repeating: -.infinity)
    var j = 0
    while j + 8 <= n { mv = vmax(mv, load(p + j)); j += 8 }
    var m = mv.max()
    while j < n { m = max(m, p[j]); j += 1 }
    let mvec = Vec(repeating: m)
    var sv = Vec(repeating: 0)
    j = 0
    while j + 8 <= n {
        let e = expClamped(load(p + j) - mvec)
        store(e, p + j); sv += e; j += 8
    }
    if j < n {
        let e = expClamped(loadPartial(p + j, n - j, fill: -.infinity) - mvec)
        let kept = e.replacing(with: 0, where: Vec(repeating: Float(n - j)) .<= Vec(0, 1, 2, 3, 4, 5, 6, 7))
        storePartial(kept, p + j, n - j); sv += kept
    }
    let inv = 1 / sv.sum()
    mapInPlace(ScaleBy(factor: inv), p, n)
}

/// Softmax along a strided axis: vectorised across `inner` (the contiguous positions).
@inline(__always)
private func softmaxStrided(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ inner: Int) {
    var i = 0
    while i < inner {
        let lanes = min(8, inner - i)
        @inline(__always) func ld(_ a: Int) -> Vec {
            lanes == 8 ? load(p + a * inner + i) : loadPartial(p + a * inner + i, lanes)
        }
        @inline(__always) func st(_ v: Vec, _ a: Int) {
            if lanes == 8 { store(v, p + a * inner + i) } else { storePartial(v, p + a * inner + i, lanes) }
        }
        var m = Vec(repeating: -.infinity)
        for a in 0..<n { m = vmax(m, ld(a)) }
        var s = Vec(repeating: 0)
        for a in 0..<n { let e = expClamped(ld(a) - m); st(e, a); s += e }
        let inv = 1 / s
        for a in 0..<n { st(ld(a) * inv, a) }
        i += 8
    }
}

private struct ScaleBy: VectorActivation {
    let factor: Float
    @inline(__always) func callAsFunction(_ x: Vec) -> Vec { x * factor }
}

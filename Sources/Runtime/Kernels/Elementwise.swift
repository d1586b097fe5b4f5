// Element-wise merge kernels (Keras Add, Subtract, Multiply, Maximum, Minimum, Average) with
// numpy broadcasting over row-major shapes of rank <= 5 (shapes align at the right; a size-1
// axis stretches), and the squeeze-and-excitation special case `channelScale`.
//   a: shape A, b: shape B, output: broadcastShape(A, B)
// How: the shapes are padded to one rank, given strides (0 on stretched axes), and adjacent axes
// are merged wherever both operands stay contiguous across them, so the common cases (same
// shape; x + bias[C]; x * s[N,1,1,C]) become a few long contiguous vector loops.

public enum BinaryOp: Sendable { case add, subtract, multiply, maximum, minimum }

/// numpy's broadcast result shape, or nil when the shapes are incompatible.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let rank = max(a.count, b.count)
    let pa = [Int](repeating: 1, count: rank - a.count) + a
    let pb = [Int](repeating: 1, count: rank - b.count) + b
    var out = [Int](repeating: 1, count: rank)
    for i in 0..<rank {
        if pa[i] == pb[i] || pb[i] == 1 { out[i] = pa[i] } else if pa[i] == 1 { out[i] = pb[i] } else { return nil }
    }
    return out
}

/// output = a (op) b with broadcasting; output has `broadcastShape(aShape, bShape)` elements and
/// may alias `a` or `b` when that operand already has the output's shape.
public func elementwise(_ op: BinaryOp, _ a: UnsafePointer<Float>, shape aShape: [Int],
                        _ b: UnsafePointer<Float>, shape bShape: [Int], output: UnsafeMutablePointer<Float>) {
    guard let outShape = broadcastShape(aShape, bShape) else {
        preconditionFailure("shapes \(aShape) and \(bShape) do not broadcast")
    }
    precondition(outShape.count <= 5, "elementwise supports rank <= 5")
    if outShape.contains(0) { return }
    switch op {
    case .add: broadcastLoop(AddOp(), a, aShape, b, bShape, outShape, output)
    case .subtract: broadcastLoop(SubOp(), a, aShape, b, bShape, outShape, output)
    case .multiply: broadcastLoop(MulOp(), a, aShape, b, bShape, outShape, output)
    case .maximum: broadcastLoop(MaxOp(), a, aShape, b, bShape, outShape, output)
    case .minimum: broadcastLoop(MinOp(), a, aShape, b, bShape, outShape, output)
    }
}

/// Keras Average: output = (x1 + x2 + ... + xk) / k over `count` floats (same shapes), summed in
/// input order as Keras does. `output` may alias any input.
public func average(_ inputs: [UnsafePointer<Float>], count: Int, output: UnsafeMutablePointer<Float>) {
    precondition(!inputs.isEmpty, "average of no inputs")
    let k = Float(inputs.count)
    parallelFor(count, minChunk: 1 << 15) { _, r in
        var i = r.lowerBound
        while i < r.upperBound {
            let n = min(8, r.upperBound - i)
            @inline(__always) func ld(_ p: UnsafePointer<Float>) -> Vec { n == 8 ? load(p + i) : loadPartial(p + i, n) }
            var s = ld(inputs[0])
            for j in 1..<inputs.count { s += ld(inputs[j]) }
            s /= k
            if n == 8 { store(s, output + i) } else { storePartial(s, output + i, n) }
            i += 8
        }
    }
}

/// Squeeze-and-excitation's Multiply: out[n, p, c] = x[n, p, c] * s[n, c] for x [N, P, C]
/// (P = H*W) and s [N, C]. `output` may be `x`.
public func channelScale(_ x: UnsafePointer<Float>, batch: Int, spatial: Int, channels: Int,
                         scale s: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    let rows = batch * spatial
    parallelFor(rows, minChunk: max(1, 16_384 / max(1, channels))) { _, r in
        for row in r {
            scaleRow(x + row * channels, by: s + (row / max(1, spatial)) * channels, into: output + row * channels,
                     count: channels)
        }
    }
}

/// out[j] = x[j] * s[j] for j < count, each product rounded once: one row of `channelScale`, also
/// the rows `pointwiseConvScaledInput` scales just before its tiles read them (the same bits as
/// the stored multiply).
@inline(__always)
func scaleRow(_ x: UnsafePointer<Float>, by s: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
    var j = 0
    while j + 8 <= count { store(load(x + j) * load(s + j), out + j); j += 8 }
    if j < count { storePartial(loadPartial(x + j, count - j) * loadPartial(s + j, count - j), out + j, count - j) }
}

// MARK: broadcasting machinery

private protocol BinaryFunctor {
    func callAsFunction(_ a: Vec, _ b: Vec) -> Vec
}
private struct AddOp: BinaryFunctor { @inline(__always) func callAsFunction(_ a: Vec, _ b: Vec) -> Vec { a + b } }
private struct SubOp: BinaryFunctor { @inline(__always) func callAsFunction(_ a: Vec, _ b: Vec) -> Vec { a - b } }
private struct MulOp: BinaryFunctor { @inline(__always) func callAsFunction(_ a: Vec, _ b: Vec) -> Vec { a * b } }
private struct MaxOp: BinaryFunctor { @inline(__always) func callAsFunction(_ a: Vec, _ b: Vec) -> Vec { vmax(a, b) } }
private struct MinOp: BinaryFunctor { @inline(__always) func callAsFunction(_ a: Vec, _ b: Vec) -> Vec { vmin(a, b) } }

/// Output shape with merged axes and each operand's strides over them (0 = broadcast).
struct BroadcastPlan: Equatable {
    var shape: [Int], aStrides: [Int], bStrides: [Int]

    init(_ aShape: [Int], _ bShape: [Int], _ outShape: [Int]) {
        let rank = outShape.count
        func strides(_ s: [Int]) -> [Int] {
            let p = [Int](repeating: 1, count: rank - s.count) + s
            var st = [Int](repeating: 0, count: rank), acc = 1
            for i in stride(from: rank - 1, through: 0, by: -1) {
                st[i] = p[i] == 1 ? 0 : acc
                acc *= p[i]
            }
            return st
        }
        var sh = [Int](), sa = [Int](), sb = [Int]()
        let a = strides(aShape), b = strides(bShape)
        for i in 0..<rank where outShape[i] != 1 {      // size-1 output axes contribute nothing
            if let last = sh.indices.last,
               sa[last] == a[i] * outShape[i], sb[last] == b[i] * outShape[i] {
                sh[last] *= outShape[i]; sa[last] = a[i]; sb[last] = b[i]    // merge into axis i
            } else {
                sh.append(outShape[i]); sa.append(a[i]); sb.append(b[i])
            }
        }
        if sh.isEmpty { sh = [1]; sa = [0]; sb = [0] }
        (shape, aStrides, bStrides) = (sh, sa, sb)
    }
}

private func broadcastLoop<F: BinaryFunctor>(_ f: F, _ a: UnsafePointer<Float>, _ aShape: [Int],
                                             _ b: UnsafePointer<Float>, _ bShape: [Int], _ outShape: [Int],
                                             _ out: UnsafeMutablePointer<Float>) {
    let plan = BroadcastPlan(aShape, bShape, outShape)
    let inner = plan.shape.last!, sa = plan.aStrides.last!, sb = plan.bStrides.last!
    let outer = plan.shape.dropLast().reduce(1, *)
    let outerShape = Array(plan.shape.dropLast())
    let oa = Array(plan.aStrides.dropLast()), ob = Array(plan.bStrides.dropLast())
    // Rows in pieces when there are too few rows to share (a residual add of same-shaped
    // tensors is one row): each piece is the same element-wise arithmetic.
    let piece = max(1, outer >= 4 * RuntimeThreads.count ? inner : min(inner, 8_192))
    let pieces = (inner + piece - 1) / piece
    parallelFor(outer * pieces, minChunk: max(1, 32_768 / piece)) { _, range in
        for t in range {
            let o = t / pieces, j = (t % pieces) * piece
            // Offsets of row o in a and b: decompose o over the outer axes.
            var rem = o, offA = 0, offB = 0
            for axis in stride(from: outerShape.count - 1, through: 0, by: -1) {
                let i = rem % outerShape[axis]
                rem /= outerShape[axis]
                offA += i * oa[axis]; offB += i * ob[axis]
            }
            innerRow(f, a + offA + j * sa, sa, b + offB + j * sb, sb, out + o * inner + j, min(piece, inner - j))
        }
    }
}

/// One contiguous output row; each operand's stride is 1 (contiguous) or 0 (one value repeated).
@inline(__always)
private func innerRow<F: BinaryFunctor>(_ f: F, _ a: UnsafePointer<Float>, _ sa: Int,
                                        _ b: UnsafePointer<Float>, _ sb: Int,
                                        _ out: UnsafeMutablePointer<Float>, _ n: Int) {
    @inline(__always) func run(_ la: (Int) -> Vec, _ lb: (Int) -> Vec, _ pa: (Int, Int) -> Vec, _ pb: (Int, Int) -> Vec) {
        var j = 0
        while j + 8 <= n { store(f(la(j), lb(j)), out + j); j += 8 }
        if j < n { storePartial(f(pa(j, n - j), pb(j, n - j)), out + j, n - j) }
    }
    let av = Vec(repeating: a[0]), bv = Vec(repeating: b[0])
    switch (sa, sb) {
    case (1, 1): run({ load(a + $0) }, { load(b + $0) }, { loadPartial(a + $0, $1) }, { loadPartial(b + $0, $1) })
    case (1, _): run({ load(a + $0) }, { _ in bv }, { loadPartial(a + $0, $1) }, { _, _ in bv })
    case (_, 1): run({ _ in av }, { load(b + $0) }, { _, _ in av }, { loadPartial(b + $0, $1) })
    default: run({ _ in av }, { _ in bv }, { _, _ in av }, { _, _ in bv })
    }
}

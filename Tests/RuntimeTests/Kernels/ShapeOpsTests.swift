import Graph
import XCTest
import TestSupport
@testable import Runtime

final class ShapeOpsTests: XCTestCase {
    func testConcatenateAlongEachAxis() {
        var rng = SeededRandom(18)
        // [2, 3, L_i, 5] along axis 2, and the other axes, with lengths 1, 4, 7
        let base = [2, 3, 0, 5]
        for axis in 0..<4 {
            let lengths = [1, 4, 7]
            let shapes = lengths.map { l -> [Int] in var s = base.map { $0 == 0 ? 6 : $0 }; s[axis] = l; return s }
            let xs = shapes.map { rng.floats($0.reduce(1, *)) }
            let outer = shapes[0][..<axis].reduce(1, *), inner = shapes[0][(axis + 1)...].reduce(1, *)
            var y = [Float](repeating: .nan, count: xs.reduce(0) { $0 + $1.count })
            let ptrs = xs.map { x -> UnsafeMutablePointer<Float> in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: x.count); p.initialize(from: x, count: x.count); return p
            }
            defer { ptrs.forEach { $0.deallocate() } }
            y.withUnsafeMutableBufferPointer { yp in
                concatenate(zip(ptrs, lengths).map { (UnsafePointer($0), $1) }, outer: outer, inner: inner, output: yp.baseAddress!)
            }
            // reference: walk the output by multi-index, pick the input whose range holds it
            var want = [Double]()
            var outShape = shapes[0]; outShape[axis] = lengths.reduce(0, +)
            for flat in 0..<outShape.reduce(1, *) {
                var idx = [Int](repeating: 0, count: 4), rem = flat
                for a in stride(from: 3, through: 0, by: -1) { idx[a] = rem % outShape[a]; rem /= outShape[a] }
                var k = 0, pos = idx[axis]
                while pos >= lengths[k] { pos -= lengths[k]; k += 1 }
                idx[axis] = pos
                let s = shapes[k]
                want.append(Double(xs[k][((idx[0] * s[1] + idx[1]) * s[2] + idx[2]) * s[3] + idx[3]]))
            }
            assertClose(y, want, tolerance: 0, "axis \(axis)")
        }
    }

    func testZeroPadAndCrop() {
        var rng = SeededRandom(19)
        let (n, h, w, c) = (2, 5, 4, 3)
        let x = rng.floats(n * h * w * c)
        let (t, b, l, r) = (1, 2, 0, 3)
        let (ph, pw) = (h + t + b, w + l + r)
        var padded = [Float](repeating: .nan, count: n * ph * pw * c)
        x.withUnsafeBufferPointer { xp in padded.withUnsafeMutableBufferPointer { pp in
            zeroPad2d(input: xp.baseAddress!, batch: n, height: h, width: w, channels: c,
                      top: t, bottom: b, left: l, right: r, output: pp.baseAddress!)
        }}
        var want = [Double](repeating: 0, count: padded.count)
        for i in 0..<n { for y in 0..<h { for xx in 0..<w { for k in 0..<c {
            want[((i * ph + y + t) * pw + xx + l) * c + k] = Double(x[((i * h + y) * w + xx) * c + k])
        }}}}
        assertClose(padded, want, tolerance: 0, "zeroPad2d")
        // cropping the padding back off gives the input
        var cropped = [Float](repeating: .nan, count: x.count)
        padded.withUnsafeBufferPointer { pp in cropped.withUnsafeMutableBufferPointer { cp in
            crop2d(input: pp.baseAddress!, batch: n, height: ph, width: pw, channels: c,
                   top: t, bottom: b, left: l, right: r, output: cp.baseAddress!)
        }}
        assertClose(cropped, x, tolerance: 0, "crop2d")
        // an asymmetric crop against index arithmetic
        var c2 = [Float](repeating: .nan, count: n * 2 * 1 * c)
        x.withUnsafeBufferPointer { xp in c2.withUnsafeMutableBufferPointer { cp in
            crop2d(input: xp.baseAddress!, batch: n, height: h, width: w, channels: c,
                   top: 2, bottom: 1, left: 1, right: 2, output: cp.baseAddress!)
        }}
        var want2 = [Float]()
        for i in 0..<n { for y in 2..<4 { for xx in 1..<2 { for k in 0..<c { want2.append(x[((i * h + y) * w + xx) * c + k]) }}}}
        assertClose(c2, want2, tolerance: 0, "asymmetric crop")
    }

    func testTransposeEveryPermutationOfRank4() {
        var rng = SeededRandom(20)
        let shape = [2, 3, 4, 5]
        let x = rng.floats(shape.reduce(1, *))
        func perms(_ a: [Int]) -> [[Int]] {
            a.count <= 1 ? [a] : a.indices.flatMap { i in perms(Array(a[..<i] + a[(i + 1)...])).map { [a[i]] + $0 } }
        }
        for p in perms([0, 1, 2, 3]) {
            var y = [Float](repeating: .nan, count: x.count)
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                transpose(input: xp.baseAddress!, shape: shape, perm: p, output: yp.baseAddress!)
            }}
            let os = p.map { shape[$0] }
            var want = [Double](repeating: 0, count: x.count)
            for i0 in 0..<2 { for i1 in 0..<3 { for i2 in 0..<4 { for i3 in 0..<5 {
                let src = [i0, i1, i2, i3]
                let o = p.map { src[$0] }
                want[((o[0] * os[1] + o[1]) * os[2] + o[2]) * os[3] + o[3]] = Double(x[((i0 * 3 + i1) * 4 + i2) * 5 + i3])
            }}}}
            assertClose(y, want, tolerance: 0, "perm \(p)")
        }
    }
}

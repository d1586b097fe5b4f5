import Graph
import XCTest
import TestSupport
@testable import Runtime

final class ElementwiseTests: XCTestCase {
    /// numpy broadcasting done the slow way: every output index mapped back to each operand.
    func reference(_ op: BinaryOp, _ a: [Float], _ aShape: [Int], _ b: [Float], _ bShape: [Int]) -> [Double] {
        let out = broadcastShapeReference(aShape, bShape)!
        let total = out.reduce(1, *)
        func index(_ flat: Int, into shape: [Int]) -> Int {
            // unravel over `out`, then ravel over `shape` right-aligned with size-1 axes pinned to 0
            var rem = flat, idx = 0, mul = 1
            for axis in stride(from: out.count - 1, through: 0, by: -1) {
                let i = rem % out[axis]; rem /= out[axis]
                let sAxis = axis - (out.count - shape.count)
                if sAxis >= 0 { idx += (shape[sAxis] == 1 ? 0 : i) * mul; mul *= shape[sAxis] }
            }
            return idx
        }
        return (0..<total).map { f -> Double in
            let x = Double(a[index(f, into: aShape)]), y = Double(b[index(f, into: bShape)])
            switch op {
            case .add: return x + y
            case .subtract: return x - y
            case .multiply: return x * y
            case .maximum: return max(x, y)
            case .minimum: return min(x, y)
            }
        }
    }

    func broadcastShapeReference(_ a: [Int], _ b: [Int]) -> [Int]? {
        let r = max(a.count, b.count)
        return (0..<r).map { i -> Int? in
            let x = i - (r - a.count) >= 0 ? a[i - (r - a.count)] : 1
            let y = i - (r - b.count) >= 0 ? b[i - (r - b.count)] : 1
            return x == y || y == 1 ? x : (x == 1 ? y : nil)
        }.reduce([Int]?([])) { acc, v in acc.flatMap { a in v.map { a + [$0] } } }
    }

    func testBroadcastingBinaryOps() {
        var rng = SeededRandom(14)
        let pairs: [([Int], [Int])] = [
            ([2, 5, 7, 13], [2, 5, 7, 13]),        // same shape
            ([2, 5, 7, 13], [13]),                  // bias over channels
            ([2, 5, 7, 13], [2, 1, 1, 13]),         // SE-style scale
            ([2, 1, 7, 1], [1, 5, 1, 3]),           // both stretch
            ([3], [4, 1]),                          // outer product shape
            ([2, 3, 4, 5, 6], [3, 1, 5, 1]),        // rank 5
            ([1], [2, 3]),                          // scalar-like
            ([2, 3, 1], [2, 3, 9]),                 // stretch innermost of a
            ([5, 1, 1], [1]),                       // all-ones
        ]
        for (aShape, bShape) in pairs {
            let outShape = broadcastShape(aShape, bShape)
            XCTAssertEqual(outShape, broadcastShapeReference(aShape, bShape), "\(aShape) \(bShape)")
            let a = rng.floats(aShape.reduce(1, *)), b = rng.floats(bShape.reduce(1, *))
            for op in [BinaryOp.add, .subtract, .multiply, .maximum, .minimum] {
                var y = [Float](repeating: .nan, count: outShape!.reduce(1, *))
                a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in y.withUnsafeMutableBufferPointer { yp in
                    elementwise(op, ap.baseAddress!, shape: aShape, bp.baseAddress!, shape: bShape, output: yp.baseAddress!)
                }}}
                assertClose(y, reference(op, a, aShape, b, bShape), tolerance: 1e-7, "\(op) \(aShape) \(bShape)")
            }
        }
        XCTAssertNil(broadcastShape([2, 3], [4, 3]))
        // An empty operand gives an empty result and touches nothing.
        XCTAssertEqual(broadcastShape([0, 3], [1, 3]), [0, 3])
        var untouched: [Float] = [42]
        let one: [Float] = [1, 2, 3]
        one.withUnsafeBufferPointer { p in untouched.withUnsafeMutableBufferPointer { o in
            elementwise(.add, p.baseAddress!, shape: [0, 3], p.baseAddress!, shape: [1, 3], output: o.baseAddress!)
        }}
        XCTAssertEqual(untouched, [42])
    }

    func testLargeAddInPlaceAcrossWorkers() {
        var rng = SeededRandom(15)
        let shape = [2, 57, 57, 24]
        let a = rng.floats(shape.reduce(1, *)), b = rng.floats(a.count)
        let got = a.mutated { ap in b.withUnsafeBufferPointer { bp in
            elementwise(.add, ap, shape: shape, bp.baseAddress!, shape: shape, output: ap)
        }}
        assertClose(got, zip(a, b).map { Double($0) + Double($1) }, tolerance: 1e-7)
    }

    func testAverage() {
        var rng = SeededRandom(16)
        for (k, count) in [(2, 13), (3, 100_003), (1, 5)] {
            let xs = (0..<k).map { _ in rng.floats(count) }
            var y = [Float](repeating: .nan, count: count)
            let pointers = xs.map { x -> UnsafeMutablePointer<Float> in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
                p.initialize(from: x, count: count)
                return p
            }
            defer { pointers.forEach { $0.deallocate() } }
            y.withUnsafeMutableBufferPointer { average(pointers.map { UnsafePointer($0) }, count: count, output: $0.baseAddress!) }
            let want = (0..<count).map { i in xs.reduce(0.0) { $0 + Double($1[i]) } / Double(k) }
            assertClose(y, want, tolerance: 1e-6, "k=\(k)")
        }
    }

    func testChannelScale() {
        var rng = SeededRandom(17)
        for (n, p, c) in [(2, 9, 13), (1, 3249, 144), (3, 1, 5)] {
            let x = rng.floats(n * p * c), s = rng.floats(n * c)
            var want = [Double](repeating: 0, count: x.count)
            for b in 0..<n { for q in 0..<p { for k in 0..<c {
                want[(b * p + q) * c + k] = Double(x[(b * p + q) * c + k]) * Double(s[b * c + k])
            }}}
            var y = [Float](repeating: .nan, count: x.count)
            x.withUnsafeBufferPointer { xp in s.withUnsafeBufferPointer { sp in y.withUnsafeMutableBufferPointer { yp in
                channelScale(xp.baseAddress!, batch: n, spatial: p, channels: c, scale: sp.baseAddress!, output: yp.baseAddress!)
            }}}
            assertClose(y, want, tolerance: 1e-7, "out of place \(n) \(p) \(c)")
            let inPlace = x.mutated { xp in s.withUnsafeBufferPointer { sp in
                channelScale(xp, batch: n, spatial: p, channels: c, scale: sp.baseAddress!, output: xp)
            }}
            assertClose(inPlace, want, tolerance: 1e-7, "in place \(n) \(p) \(c)")
        }
    }
}

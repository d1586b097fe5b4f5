import XCTest
import Graph
import TestSupport
@testable import Runtime

/// The packed pointwise product against a Double reference, over sizes that exercise every
/// remainder: rows not a multiple of the six-row tile, 8-wide and partial last panels, strided
/// input and output rows, several blocks and panel groups across workers.
final class PointwiseConvTests: XCTestCase {
    struct Case { let m: Int, k: Int, n: Int, lda: Int, ldc: Int }

    static let cases: [Case] = [
        Case(m: 1, k: 1, n: 1, lda: 1, ldc: 1),
        Case(m: 5, k: 3, n: 7, lda: 3, ldc: 7),
        Case(m: 6, k: 17, n: 8, lda: 17, ldc: 8),
        Case(m: 7, k: 16, n: 9, lda: 19, ldc: 11),        // strided rows on both sides
        Case(m: 13, k: 24, n: 16, lda: 24, ldc: 16),
        Case(m: 37, k: 40, n: 17, lda: 40, ldc: 17),      // 16 + a 1-wide 8-panel
        Case(m: 100, k: 96, n: 24, lda: 96, ldc: 24),     // 16 + 8
        Case(m: 999, k: 32, n: 40, lda: 32, ldc: 40),     // several row blocks
        Case(m: 64, k: 1152, n: 320, lda: 1152, ldc: 320), // few rows, large k: panel groups
        Case(m: 2, k: 480, n: 20, lda: 480, ldc: 20),     // batch-2 squeeze-and-excitation shape
        Case(m: 1, k: 1152, n: 48, lda: 1152, ldc: 48),   // squeeze-and-excitation at batch 1: panels split
        Case(m: 1, k: 48, n: 1152, lda: 48, ldc: 1152),
    ]

    private func reference(_ c: Case, _ x: [Float], _ w: [Float], rowScale: [Float]?) -> [Double] {
        var out = [Double](repeating: 0, count: c.m * c.n)
        for r in 0..<c.m {
            for j in 0..<c.n {
                var acc = 0.0
                for kk in 0..<c.k { acc += Double(x[r * c.lda + kk]) * Double(w[kk * c.n + j]) * Double(rowScale?[kk] ?? 1) }
                out[r * c.n + j] = acc
            }
        }
        return out
    }

    /// Runs the kernel; returns the [m, n] result and whether the gaps between strided output
    /// rows kept their sentinel.
    private func run(_ c: Case, _ x: [Float], _ w: [Float], rowScale: [Float]?, scale: [Float]?, shift: [Float]?,
                     residual: [Float]?, _ act: ActivationSpec, threads: Int) -> ([Float], Bool) {
        let packedCount = pointwisePackedCount(k: c.k, n: c.n)
        var packed = [Float](repeating: .nan, count: max(1, packedCount))
        w.withUnsafeBufferPointer { wp in packed.withUnsafeMutableBufferPointer { pp in
            let s = rowScale ?? []
            s.withUnsafeBufferPointer { sp in
                packPointwise(wp.baseAddress!, k: c.k, n: c.n, rowScale: rowScale == nil ? nil : sp.baseAddress,
                              into: pp.baseAddress!)
            }
        }}
        XCTAssertFalse(packed[..<packedCount].contains { $0.isNaN }, "packing leaves no float unwritten")
        var out = [Float](repeating: -7777, count: (c.m - 1) * c.ldc + c.n)
        // The residual is laid out like the output (rows ldc apart).
        let res = residual.map { r in (0..<out.count).map { i in i % c.ldc < c.n ? r[(i / c.ldc) * c.n + i % c.ldc] : 0 } }
        let sc = scale ?? [], sh = shift ?? [], rs = res ?? []
        x.withUnsafeBufferPointer { xp in packed.withUnsafeBufferPointer { pp in
        sc.withUnsafeBufferPointer { scp in sh.withUnsafeBufferPointer { shp in rs.withUnsafeBufferPointer { rsp in
        out.withUnsafeMutableBufferPointer { op in
            let e = Epilogue(scale: scale == nil ? nil : scp.baseAddress, shift: shift == nil ? nil : shp.baseAddress,
                             residual: res == nil ? nil : rsp.baseAddress, activation: act)
            pointwiseConv(m: c.m, n: c.n, k: c.k, input: xp.baseAddress!, lda: c.lda, packed: pp.baseAddress!,
                          output: op.baseAddress!, ldc: c.ldc, epilogue: e, threads: threads)
        }}}}}}
        var dense: [Float] = []
        var gapsKept = true
        for i in out.indices {
            if i % c.ldc < c.n { dense.append(out[i]) } else if out[i] != -7777 { gapsKept = false }
        }
        return (dense, gapsKept)
    }

    func testMatchesReferenceWithEveryEpiloguePart() {
        var rng = SeededRandom(11)
        for c in Self.cases {
            let x = rng.floats((c.m - 1) * c.lda + c.k), w = rng.floats(c.k * c.n, -0.3, 0.3)
            let scale = rng.floats(c.n, 0.5, 1.5), shift = rng.floats(c.n), residual = rng.floats(c.m * c.n)
            let rowScale = rng.floats(c.k, 0, 1)
            let acc = reference(c, x, w, rowScale: nil)
            let scaledAcc = reference(c, x, w, rowScale: rowScale)
            let variants: [([Float]?, [Float]?, [Float]?, [Float]?, ActivationSpec)] = [
                (nil, nil, nil, nil, .linear), (nil, shift, nil, nil, .swish), (scale, shift, residual, nil, .relu6),
                (nil, shift, residual, rowScale, .sigmoid), (scale, nil, nil, nil, .relu),
                (nil, shift, nil, nil, ActivationSpec(.gelu)),                  // applied as a pass per block
                (nil, shift, residual, nil, ActivationSpec(.relu, alpha: 0.1)), // likewise
                // Swish and linear run tiles of their own under AVX-512: every epilogue part there too.
                (scale, shift, residual, nil, .swish), (scale, nil, residual, rowScale, .linear),
            ] + (c.ldc == c.n ? [(scale, shift, nil, nil, ActivationSpec(.softmax))] : [])
            for (threads, isa) in [1, 2, 3].flatMap({ t in kernelISAs.map { (t, $0) } }) {
                for (s, b, r, rowS, act) in variants {
                    let (got, gapsKept) = KernelISA.with(avx512: isa) {
                        run(c, x, w, rowScale: rowS, scale: s, shift: b, residual: r, act, threads: threads)
                    }
                    let want = referenceEpilogue(rowS == nil ? acc : scaledAcc, channels: c.n, scale: s, shift: b, act,
                                                 residual: r)
                    let label = "m \(c.m) k \(c.k) n \(c.n) threads \(threads) \(isa ? "AVX-512" : "AVX2") scale:\(s != nil) shift:\(b != nil) "
                        + "residual:\(r != nil) rowScale:\(rowS != nil) \(act)"
                    assertClose(got, want, tolerance: 2e-5 * Double(max(1, c.k / 64)), label)
                    XCTAssertTrue(gapsKept, "wrote between output rows: \(label)")
                }
            }
        }
    }

    /// k = 0: the product is zero and only the epilogue remains.
    func testEmptyInnerDimension() {
        let c = Case(m: 7, k: 0, n: 11, lda: 1, ldc: 11)
        let shift = (0..<11).map { Float($0) - 5 }
        for isa in kernelISAs {
            let (got, _) = KernelISA.with(avx512: isa) {
                run(c, [0], [0], rowScale: nil, scale: nil, shift: shift, residual: nil, .relu, threads: 2)
            }
            XCTAssertEqual(got, (0..<77).map { max(0, Float($0 % 11) - 5) }, isa ? "AVX-512" : "AVX2")
        }
    }

    /// sigmoid and swish in the epilogues over the whole float range (a 1x1 product with k = 1
    /// and weight 1 passes the input through): within 1e-6 relative of Double, or 1e-35 absolute
    /// in the far negative tail (the AVX2 kernels floor the argument at -87, the AVX-512 ones
    /// clamp it to +-1e4, where e^-x is 0 or infinite); NaN stays NaN.
    func testLogisticEpiloguesOverTheWholeRange() {
        var xs: [Float] = stride(from: -120, through: 120, by: 0.37).map { Float($0) }
        xs += [-1e30, -88.5, -87.2, -1e-6, 0, 1e-6, 88.5, 1e30, .greatestFiniteMagnitude, -.greatestFiniteMagnitude]
        let one: [Float] = [1]
        for isa in kernelISAs {
            for (act, f) in [(ActivationSpec.sigmoid, { (x: Double) in 1 / (1 + exp(-x)) }),
                             (ActivationSpec.swish, { (x: Double) in x / (1 + exp(-x)) })] {
                var out = [Float](repeating: 0, count: xs.count + 1)
                KernelISA.with(avx512: isa) {
                    pointwiseConv(m: xs.count + 1, n: 1, k: 1, input: xs + [.nan], lda: 1, packed: one + [0, 0, 0, 0, 0, 0, 0],
                                  output: &out, ldc: 1, epilogue: Epilogue(activation: act), threads: 1)
                }
                for (x, y) in zip(xs, out) {
                    let want = f(Double(x))
                    let err = abs(Double(y) - want) / max(abs(want), 1e-30)
                    XCTAssertTrue(err < 1e-6 || abs(Double(y) - want) < 1e-35,
                                  "\(act.kind) \(isa ? "AVX-512" : "AVX2") at \(x): \(y), want \(want)")
                }
                XCTAssertTrue(out.last!.isNaN, "\(act.kind) of NaN")
            }
        }
    }

    /// Scaling the rows of an already packed kernel (squeeze-and-excitation at run time) gives
    /// exactly the packing of the scaled kernel.
    func testScalingPackedRowsEqualsPackingScaledRows() {
        var rng = SeededRandom(12)
        for (k, n) in [(1, 1), (3, 7), (17, 8), (24, 20), (40, 17), (96, 24), (672, 112), (480, 40), (1152, 320)] {
            let w = rng.floats(k * n), scale = rng.floats(k, 0, 1)
            let count = pointwisePackedCount(k: k, n: n)
            var direct = [Float](repeating: .nan, count: count), packed = direct
            packPointwise(w, k: k, n: n, rowScale: scale, into: &direct)
            packPointwise(w, k: k, n: n, into: &packed)
            // The panels are shared among the workers: every thread count gives every float.
            for threads in [1, 2, 3] {
                var scaled = [Float](repeating: .nan, count: count)
                scalePackedPointwise(packed, k: k, n: n, rowScale: scale, into: &scaled, threads: threads)
                XCTAssertEqual(scaled, direct, "k \(k) n \(n) threads \(threads)")
            }
        }
    }

    /// A row or a few against a large kernel (squeeze-and-excitation at batch 1) splits the panels
    /// among the workers; each output channel is still the same sum in the same order.
    /// Few rows against a small kernel with few panels (225 x 480 x 80 and x 112, EfficientNet's
    /// block4-5 projections at batch 1) are shared among the workers by rows: each output's sum is
    /// the one-worker sum, bit for bit, with partial last tiles and a residual.
    func testRowsSharedAmongWorkersGiveTheSameBits() {
        var rng = SeededRandom(17)
        for c in [Case(m: 225, k: 480, n: 80, lda: 480, ldc: 80), Case(m: 225, k: 480, n: 112, lda: 480, ldc: 112),
                  Case(m: 50, k: 96, n: 40, lda: 100, ldc: 44)] {
            let x = rng.floats((c.m - 1) * c.lda + c.k), w = rng.floats(c.k * c.n, -0.3, 0.3), shift = rng.floats(c.n)
            let residual = rng.floats((c.m - 1) * c.ldc + c.n)
            for isa in kernelISAs {
                KernelISA.with(avx512: isa) {
                    let one = run(c, x, w, rowScale: nil, scale: nil, shift: shift, residual: residual, .linear,
                                  threads: 1).0
                    for threads in [2, 3] {
                        let many = run(c, x, w, rowScale: nil, scale: nil, shift: shift, residual: residual, .linear,
                                       threads: threads).0
                        XCTAssertEqual(many, one, "m \(c.m) k \(c.k) n \(c.n) threads \(threads) \(isa ? "AVX-512" : "AVX2")")
                    }
                }
            }
        }
    }

    func testPanelsSplitAmongWorkersGiveTheSameBits() {
        var rng = SeededRandom(13)
        for c in [Case(m: 1, k: 1152, n: 48, lda: 1152, ldc: 48), Case(m: 1, k: 48, n: 1152, lda: 48, ldc: 1152),
                  Case(m: 2, k: 672, n: 112, lda: 672, ldc: 112)] {
            let x = rng.floats((c.m - 1) * c.lda + c.k), w = rng.floats(c.k * c.n, -0.3, 0.3), shift = rng.floats(c.n)
            for isa in kernelISAs {
                KernelISA.with(avx512: isa) {
                    let one = run(c, x, w, rowScale: nil, scale: nil, shift: shift, residual: nil, .swish, threads: 1).0
                    for threads in [2, 3] {
                        let many = run(c, x, w, rowScale: nil, scale: nil, shift: shift, residual: nil, .swish,
                                       threads: threads).0
                        XCTAssertEqual(many, one, "m \(c.m) k \(c.k) n \(c.n) threads \(threads) \(isa ? "AVX-512" : "AVX2")")
                    }
                }
            }
        }
    }
}

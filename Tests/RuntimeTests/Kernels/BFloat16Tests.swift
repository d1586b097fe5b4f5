import Foundation
import Graph
import TestSupport
import XCTest
@testable import Runtime

/// The bfloat16 products (AVX512_BF16): rounding, the pointwise kernel against references in
/// Double, the fused expansion. Tolerances are computed from bf16's unit roundoff (2^-8: 8
/// significant bits) and float32's (2^-24), never fixed numbers.
final class BFloat16Tests: XCTestCase {
    /// bf16's unit roundoff: a rounded value is within this relative distance of the original.
    static let unitRoundoff = 1.0 / 256

    override func setUpWithError() throws {
        try XCTSkipUnless(KernelISA.bf16Available, "this CPU has no AVX512_BF16: bf16 is refused here (PrecisionCommandTests checks that)")
    }

    /// The nearest bf16 by distance in Double, ties to the even one.
    private func nearest(_ x: Float) -> UInt16 {
        let down = UInt16(truncatingIfNeeded: x.bitPattern >> 16)
        let up = down &+ 1
        let dDown = abs(Double(floatFromBFloat16(down)) - Double(x))
        let dUp = abs(Double(floatFromBFloat16(up)) - Double(x))
        if dDown == dUp { return down & 1 == 0 ? down : up }
        return dDown < dUp ? down : up
    }

    func testRoundingIsToNearestEven() {
        var rng = SeededRandom(31)
        var xs: [Float] = (0..<20_000).map { _ in rng.uniform(-1, 1) * Float(pow(2.0, Double(rng.uniform(-30, 30)))) }
        // Exact ties (the lower 16 bits 0x8000) with even and odd kept parts, and values next to them.
        for kept: UInt32 in [0x3F80, 0x3F81, 0xBF80, 0xBF81, 0x4049, 0x0001] {
            for low: UInt32 in [0x7FFF, 0x8000, 0x8001] { xs.append(Float(bitPattern: kept << 16 | low)) }
        }
        xs += [0, -0, 1, -1, .leastNormalMagnitude, .leastNonzeroMagnitude]
        for x in xs { XCTAssertEqual(bfloat16Bits(x), nearest(x), "\(x) (bits \(String(x.bitPattern, radix: 16)))") }
        XCTAssertEqual(floatFromBFloat16(bfloat16Bits(.infinity)), .infinity)
        XCTAssertEqual(floatFromBFloat16(bfloat16Bits(-.infinity)), -.infinity)
        XCTAssertTrue(floatFromBFloat16(bfloat16Bits(.nan)).isNaN)
        // A NaN whose payload sits only in the low bits must not round into infinity.
        XCTAssertTrue(floatFromBFloat16(bfloat16Bits(Float(bitPattern: 0x7F80_0001))).isNaN)
        // Above the largest bf16, rounding overflows to infinity, as the instruction does.
        XCTAssertEqual(floatFromBFloat16(bfloat16Bits(.greatestFiniteMagnitude)), .infinity)
    }

    private func rounded(_ x: Float) -> Double { Double(floatFromBFloat16(bfloat16Bits(x))) }

    private func runBF16(_ c: PointwiseConvTests.Case, _ x: [Float], _ w: [Float], rowScale: [Float]?, scale: [Float]?,
                         shift: [Float]?, residual: [Float]?, _ act: ActivationSpec, threads: Int) -> [Float] {
        var packed = [UInt32](repeating: 0xFFFF_FFFF, count: max(1, pointwiseBF16PackedCount(k: c.k, n: c.n)))
        packPointwiseBF16(w, k: c.k, n: c.n, into: &packed)
        var out = [Float](repeating: -7777, count: (c.m - 1) * c.ldc + c.n)
        let res = residual.map { r in (0..<out.count).map { i in i % c.ldc < c.n ? r[(i / c.ldc) * c.n + i % c.ldc] : 0 } }
        let sc = scale ?? [], sh = shift ?? [], rs = res ?? [], rowS = rowScale ?? []
        sc.withUnsafeBufferPointer { scp in sh.withUnsafeBufferPointer { shp in rs.withUnsafeBufferPointer { rsp in
        rowS.withUnsafeBufferPointer { rowp in out.withUnsafeMutableBufferPointer { op in
            let e = Epilogue(scale: scale == nil ? nil : scp.baseAddress, shift: shift == nil ? nil : shp.baseAddress,
                             residual: res == nil ? nil : rsp.baseAddress, activation: act)
            pointwiseConvBF16(m: c.m, n: c.n, k: c.k, input: x, lda: c.lda, rowScale: rowScale == nil ? nil : rowp.baseAddress,
                              packed: packed, output: op.baseAddress!, ldc: c.ldc, epilogue: e, threads: threads)
        }}}}}
        var dense: [Float] = []
        for i in out.indices {
            if i % c.ldc < c.n { dense.append(out[i]) } else { XCTAssertEqual(out[i], -7777, "wrote between output rows") }
        }
        return dense
    }

    /// The products of the bf16-rounded operands summed in Double, and per output the sum of the
    /// products' magnitudes (what the rounding errors scale with).
    private func reference(_ c: PointwiseConvTests.Case, _ x: [Float], _ w: [Float], rowScale: [Float]?,
                           roundOperands: Bool) -> (acc: [Double], magnitude: [Double]) {
        var acc = [Double](repeating: 0, count: c.m * c.n), magnitude = acc
        for r in 0..<c.m {
            // The kernel scales in float32, then rounds: the reference does the same.
            let row = (0..<c.k).map { kk -> Double in
                let v = x[r * c.lda + kk] * (rowScale?[kk] ?? 1)
                return roundOperands ? rounded(v) : Double(x[r * c.lda + kk]) * Double(rowScale?[kk] ?? 1)
            }
            for j in 0..<c.n {
                var s = 0.0, a = 0.0
                for kk in 0..<c.k {
                    let wv = roundOperands ? rounded(w[kk * c.n + j]) : Double(w[kk * c.n + j])
                    s += row[kk] * wv
                    a += abs(row[kk] * wv)
                }
                acc[r * c.n + j] = s
                magnitude[r * c.n + j] = a
            }
        }
        return (acc, magnitude)
    }

    /// Against the products of the rounded operands the kernel differs only by float32
    /// accumulation (k additions of at most 2^-24 relative each, on the magnitudes); against the
    /// exact products, by at most 2 x 2^-8 (both operands rounded) more. Every epilogue part and
    /// activation, 1-3 workers, every remainder of the tiles (the float32 kernel's cases).
    func testPointwiseMatchesReferencesWithinBF16Bounds() {
        var rng = SeededRandom(32)
        let cases = PointwiseConvTests.cases + [PointwiseConvTests.Case(m: 25, k: 33, n: 47, lda: 35, ldc: 50)]   // odd k
        for c in cases {
            let x = rng.floats((c.m - 1) * c.lda + c.k), w = rng.floats(c.k * c.n, -0.3, 0.3)
            let scale = rng.floats(c.n, 0.5, 1.5), shift = rng.floats(c.n), residual = rng.floats(c.m * c.n)
            let rowScale = rng.floats(c.k, 0, 1)
            let variants: [([Float]?, [Float]?, [Float]?, [Float]?, ActivationSpec)] = [
                (nil, nil, nil, nil, .linear), (nil, shift, nil, nil, .swish), (scale, shift, residual, nil, .relu6),
                (nil, shift, residual, rowScale, .sigmoid), (scale, nil, nil, nil, .relu),
                (nil, shift, nil, nil, ActivationSpec(.gelu)),
            ] + (c.ldc == c.n ? [(scale, shift, nil, nil, ActivationSpec(.softmax))] : [])
            let plain = reference(c, x, w, rowScale: nil, roundOperands: true)
            let scaled = reference(c, x, w, rowScale: rowScale, roundOperands: true)
            let exact = reference(c, x, w, rowScale: nil, roundOperands: false)
            for threads in [1, 2, 3] {
                for (s, b, r, rowS, act) in variants {
                    let got = runBF16(c, x, w, rowScale: rowS, scale: s, shift: b, residual: r, act, threads: threads)
                    let ref = rowS == nil ? plain : scaled
                    let want = referenceEpilogue(ref.acc, channels: c.n, scale: s, shift: b, act, residual: r)
                    let label = "m \(c.m) k \(c.k) n \(c.n) threads \(threads) scale:\(s != nil) shift:\(b != nil) "
                        + "residual:\(r != nil) rowScale:\(rowS != nil) \(act.kind)"
                    // float32 accumulation and epilogue; the activations here change a difference by
                    // at most 1.1x (swish's steepest slope), softmax's by at most 2x.
                    let accumulation = Double(c.k + 4) * pow(2, -24) * (ref.magnitude.max() ?? 0) * 1.5
                    let epilogue = 1e-6 * (want.map(abs).max() ?? 0) + 1e-7
                    assertClose(got, want, tolerance: 2 * (accumulation + epilogue), label)
                    if s == nil && rowS == nil && act.kind == .linear {
                        // Against the exact products: the operands' rounding is the whole difference.
                        let bound = (2 * Self.unitRoundoff + Self.unitRoundoff * Self.unitRoundoff)
                            * (exact.magnitude.max() ?? 0) + 2 * accumulation + epilogue
                        let exactWant = referenceEpilogue(exact.acc, channels: c.n, scale: nil, shift: b, act, residual: r)
                        assertClose(got, exactWant, tolerance: bound, "against exact products: " + label)
                    }
                }
            }
        }
    }

    /// With several workers on few rows (late layers at batch 1) the workers split the panels and
    /// the rows are rounded once for all of them: the result must be the single worker's, whose
    /// blocks round their own rows, bit for bit (odd k, strided rows, with and without the channel
    /// scale; 3, 7 and 8 panel groups).
    func testPanelGroupsShareRoundedRowsWithSameResults() {
        var rng = SeededRandom(34)
        let cases = [PointwiseConvTests.Case(m: 64, k: 1151, n: 200, lda: 1160, ldc: 210),
                     PointwiseConvTests.Case(m: 225, k: 481, n: 80, lda: 481, ldc: 80),
                     PointwiseConvTests.Case(m: 64, k: 320, n: 1280, lda: 320, ldc: 1280)]
        for c in cases {
            let x = rng.floats((c.m - 1) * c.lda + c.k), w = rng.floats(c.k * c.n, -0.3, 0.3)
            let shift = rng.floats(c.n), rowScale = rng.floats(c.k, 0, 1)
            for rowS in [nil, rowScale] {
                let one = runBF16(c, x, w, rowScale: rowS, scale: nil, shift: shift, residual: nil, .swish, threads: 1)
                for threads in [2, 3] {
                    let got = runBF16(c, x, w, rowScale: rowS, scale: nil, shift: shift, residual: nil, .swish, threads: threads)
                    XCTAssertEqual(got, one, "m \(c.m) k \(c.k) n \(c.n) threads \(threads) rowScale:\(rowS != nil)")
                }
            }
        }
    }

    /// The fused expansion in bf16 equals the bf16 expansion stored whole, then the float32
    /// depthwise kernel: the same arithmetic in the same order.
    func testFusedExpansionEqualsBF16ExpansionThenDepthwise() {
        var rng = SeededRandom(33)
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        for c in ExpandDepthwiseTests.cases {
            let g = Conv2DGeometry(batch: c.n, inH: c.h, inW: c.w, inC: c.c, outC: c.c, kernelH: c.k, kernelW: c.k,
                                   strideH: c.s, strideW: c.s, padding: c.p)
            let x = rng.floats(c.n * c.h * c.w * c.inC), ek = rng.floats(c.inC * c.c, -0.5, 0.5)
            let es = rng.floats(c.c), dk = rng.floats(c.k * c.k * c.c, -0.4, 0.4), ds = rng.floats(c.c)
            var packed = [UInt32](repeating: 0, count: pointwiseBF16PackedCount(k: c.inC, n: c.c))
            packPointwiseBF16(ek, k: c.inC, n: c.c, into: &packed)
            let unread = [Float](repeating: .nan, count: 1)
            for (ea, da) in [(ActivationSpec.swish, ActivationSpec.swish), (.relu6, .linear)] {
                var expanded = [Float](repeating: 0, count: c.n * c.h * c.w * c.c)
                var want = [Float](repeating: 0, count: g.outputCount)
                es.withUnsafeBufferPointer { esp in ds.withUnsafeBufferPointer { dsp in
                    pointwiseConvBF16(m: c.n * c.h * c.w, n: c.c, k: c.inC, input: x, lda: c.inC, packed: packed,
                                      output: &expanded, ldc: c.c, epilogue: Epilogue(shift: esp.baseAddress, activation: ea))
                    KernelISA.with(avx512: true) {
                        depthwiseConv2d(input: expanded, geometry: g, multiplier: 1, kernel: dk, output: &want,
                                        epilogue: Epilogue(shift: dsp.baseAddress, activation: da))
                    }
                }}
                for threads in [1, 2] {
                    RuntimeThreads.set(threads)
                    let wsCount = expandDepthwiseWorkspaceCount(kernelH: c.k, inW: c.w, channels: c.c)
                    var ws = [Float](repeating: .nan, count: wsCount)
                    var got = [Float](repeating: .nan, count: g.outputCount)
                    es.withUnsafeBufferPointer { esp in ds.withUnsafeBufferPointer { dsp in
                        KernelISA.with(avx512: true) {
                            expandDepthwiseConv(input: x, inChannels: c.inC, expandPacked: unread, expandPackedBF16: packed,
                                                expandEpilogue: Epilogue(shift: esp.baseAddress, activation: ea),
                                                geometry: g, kernel: dk,
                                                epilogue: Epilogue(shift: dsp.baseAddress, activation: da),
                                                output: &got, workspace: &ws, workspaceCount: wsCount)
                        }
                    }}
                    XCTAssertEqual(got, want, "\(c) \(ea.kind)/\(da.kind) threads \(threads)")
                }
            }
        }
    }
}

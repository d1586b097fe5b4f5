import XCTest
import CKernels
import Graph
import TestSupport
@testable import Runtime

final class DepthwiseConv2DTests: XCTestCase {
    /// Naive depthwise conv in Double: output channel c*M + m from input channel c, HWCM kernel.
    func reference(_ x: [Float], _ g: Conv2DGeometry, _ w: [Float], _ mult: Int) -> [Double] {
        var out = [Double](repeating: 0, count: g.outputCount)
        for n in 0..<g.batch { for oy in 0..<g.outH { for ox in 0..<g.outW {
            for c in 0..<g.inC { for m in 0..<mult {
                var acc = 0.0
                for ky in 0..<g.kernelH { for kx in 0..<g.kernelW {
                    let iy = oy * g.strideH - g.padTop + ky * g.dilationH
                    let ix = ox * g.strideW - g.padLeft + kx * g.dilationW
                    guard iy >= 0, iy < g.inH, ix >= 0, ix < g.inW else { continue }
                    acc += Double(x[((n * g.inH + iy) * g.inW + ix) * g.inC + c])
                         * Double(w[((ky * g.kernelW + kx) * g.inC + c) * mult + m])
                }}
                out[((n * g.outH + oy) * g.outW + ox) * g.outC + c * mult + m] = acc
            }}
        }}}
        return out
    }

    func run(_ x: [Float], _ g: Conv2DGeometry, _ w: [Float], _ mult: Int,
             scale: [Float]?, shift: [Float]?, _ act: ActivationSpec, residual: [Float]? = nil) -> [Float] {
        var out = [Float](repeating: .nan, count: g.outputCount)
        let s = scale ?? [], b = shift ?? [], r = residual ?? []
        x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in
        s.withUnsafeBufferPointer { sp in b.withUnsafeBufferPointer { bp in r.withUnsafeBufferPointer { rp in
        out.withUnsafeMutableBufferPointer { op in
            depthwiseConv2d(input: xp.baseAddress!, geometry: g, multiplier: mult, kernel: wp.baseAddress!,
                            output: op.baseAddress!,
                            epilogue: Epilogue(scale: scale == nil ? nil : sp.baseAddress,
                                               shift: shift == nil ? nil : bp.baseAddress,
                                               residual: residual == nil ? nil : rp.baseAddress, activation: act))
        }}}}}}
        return out
    }

    struct Case { let name: String; let g: Conv2DGeometry; let mult: Int }
    static let cases: [Case] = {
        func c(_ name: String, n: Int = 1, h: Int, w: Int, ch: Int, mult: Int = 1, kh: Int, kw: Int,
               s: (Int, Int) = (1, 1), d: (Int, Int) = (1, 1), p: ConvPadding) -> Case {
            Case(name: name, g: Conv2DGeometry(batch: n, inH: h, inW: w, inC: ch, outC: ch * mult, kernelH: kh,
                                               kernelW: kw, strideH: s.0, strideW: s.1, dilationH: d.0,
                                               dilationW: d.1, padding: p), mult: mult)
        }
        return [
            c("3x3 s1 same C13", n: 2, h: 9, w: 7, ch: 13, kh: 3, kw: 3, p: .same),
            c("3x3 s2 same odd C40", h: 11, w: 9, ch: 40, kh: 3, kw: 3, s: (2, 2), p: .same),
            c("3x3 s2 same even C72", n: 2, h: 10, w: 12, ch: 72, kh: 3, kw: 3, s: (2, 2), p: .same),
            c("5x5 s1 same C32", h: 8, w: 9, ch: 32, kh: 5, kw: 5, p: .same),
            c("5x5 s2 same C5", h: 13, w: 10, ch: 5, kh: 5, kw: 5, s: (2, 2), p: .same),
            c("3x3 valid s2 C3 (ZeroPadding2D + valid)", h: 9, w: 9, ch: 3, kh: 3, kw: 3, s: (2, 2), p: .valid),
            c("3x3 dilation 2 same C16", n: 2, h: 9, w: 10, ch: 16, kh: 3, kw: 3, d: (2, 2), p: .same),
            c("3x5 non-square s(1,2) C8", h: 7, w: 12, ch: 8, kh: 3, kw: 5, s: (1, 2), p: .same),
            c("5x3 valid d(2,1) C9", h: 14, w: 8, ch: 9, kh: 5, kw: 3, d: (2, 1), p: .valid),
            c("multiplier 2 C5", n: 2, h: 7, w: 6, ch: 5, mult: 2, kh: 3, kw: 3, p: .same),
            c("multiplier 3 C3 s2", h: 9, w: 8, ch: 3, mult: 3, kh: 3, kw: 3, s: (2, 2), p: .same),
            c("multiplier 2 C8 dilated", h: 8, w: 8, ch: 8, mult: 2, kh: 3, kw: 3, d: (2, 2), p: .same),
            c("kernel wider than input", h: 3, w: 2, ch: 11, kh: 5, kw: 5, p: .same),
            c("1x1 C20", h: 4, w: 5, ch: 20, kh: 1, kw: 1, p: .valid),
            c("EfficientNet-like 5x5 s1 C144", n: 2, h: 15, w: 15, ch: 144, kh: 5, kw: 5, p: .same),
            c("5x5 s2 valid wide C13 (strips + tail)", h: 9, w: 21, ch: 13, kh: 5, kw: 5, s: (2, 2), p: .valid),
            c("3x3 s2 same wide C24 (strips)", n: 2, h: 6, w: 23, ch: 24, kh: 3, kw: 3, s: (2, 2), p: .same),
            // 16-lane kernel: strips of 8 then 4 then single pixels; 64-channel blocks, 16s, a tail.
            c("3x3 s1 same w 22 C100", h: 5, w: 22, ch: 100, kh: 3, kw: 3, p: .same),
            c("5x5 s2 same w 30 C84", h: 7, w: 30, ch: 84, kh: 5, kw: 5, s: (2, 2), p: .same),
            c("5x5 s1 valid w 17 C17", h: 6, w: 17, ch: 17, kh: 5, kw: 5, p: .valid),
            // Rows computed in several blocks of channels (the AVX-512 kernel keeps a block's input
            // rows and weights in L1): blocks of 128 with a tail of 72 (4 vectors and a half),
            // blocks of 128 with a tail of 44, and blocks of 112 (not a multiple of 64) with a tail of 28.
            c("5x5 s1 same 15x15 C200 (channel blocks)", h: 15, w: 15, ch: 200, kh: 5, kw: 5, p: .same),
            c("5x5 s2 same 17x17 C300 (channel blocks)", h: 17, w: 17, ch: 300, kh: 5, kw: 5, s: (2, 2), p: .same),
            c("3x3 s1 same w 30 C700 (channel blocks)", n: 2, h: 4, w: 30, ch: 700, kh: 3, kw: 3, p: .same),
            // Interior strips of 8, 4 and 2 pixels (the 17x17 and 15x15 5x5 cases end in a strip of 3).
            c("3x3 s1 same w 16 C40 (strip of 2)", h: 5, w: 16, ch: 40, kh: 3, kw: 3, p: .same),
        ]
    }()

    func testDepthwiseMatchesReference() {
        var rng = SeededRandom(5)
        for c in Self.cases {
            let g = c.g
            let x = rng.floats(g.inputCount), w = rng.floats(g.kernelH * g.kernelW * g.outC)
            let scale = rng.floats(g.outC, 0.5, 1.5), shift = rng.floats(g.outC)
            let acc = reference(x, g, w, c.mult)
            let residual = rng.floats(g.outputCount)
            for isa in kernelISAs {
                let label = "\(c.name) \(isa ? "AVX-512" : "AVX2")"
                for (s, b, act) in [(nil, nil, ActivationSpec.linear), (scale, nil, .relu6), (nil, shift, .swish),
                                    (scale, shift, .swish), (scale, shift, ActivationSpec(.softmax)),
                                    (nil, shift, ActivationSpec(.gelu))]
                        as [([Float]?, [Float]?, ActivationSpec)] {
                    let got = KernelISA.with(avx512: isa) { run(x, g, w, c.mult, scale: s, shift: b, act) }
                    let want = referenceEpilogue(acc, channels: g.outC, scale: s, shift: b, act)
                    assertClose(got, want, tolerance: 1e-4, "\(label) scale:\(s != nil) shift:\(b != nil) \(act.kind)")
                }
                let got = KernelISA.with(avx512: isa) {
                    run(x, g, w, c.mult, scale: scale, shift: shift, .relu, residual: residual)
                }
                let want = referenceEpilogue(acc, channels: g.outC, scale: scale, shift: shift, .relu, residual: residual)
                assertClose(got, want, tolerance: 1e-4, "\(label) residual + relu")
            }
        }
    }

    func testEveryActivationFused() {
        var rng = SeededRandom(6)
        let c = Self.cases[1]
        let x = rng.floats(c.g.inputCount), w = rng.floats(c.g.kernelH * c.g.kernelW * c.g.outC, -0.4, 0.4)
        let shift = rng.floats(c.g.outC)
        let acc = reference(x, c.g, w, c.mult)
        for act in allActivationSpecs {
            for isa in kernelISAs {
                let got = KernelISA.with(avx512: isa) { run(x, c.g, w, c.mult, scale: nil, shift: shift, act) }
                let want = referenceEpilogue(acc, channels: c.g.outC, scale: nil, shift: shift, act)
                assertClose(got, want, tolerance: 1e-4, "\(act) \(isa ? "AVX-512" : "AVX2")")
            }
        }
    }

    /// With channel sums (the AVX-512 kernel feeding a global average pool), the output is the
    /// same and each output row's per-channel sums are those of the stored values.
    func testChannelSumsPerOutputRow() throws {
        try XCTSkipUnless(KernelISA.available, "no AVX-512 here: plans never ask for channel sums on this machine")
        var rng = SeededRandom(9)
        for c in Self.cases where c.mult == 1 {
            let g = c.g
            let x = rng.floats(g.inputCount), w = rng.floats(g.kernelH * g.kernelW * g.outC), shift = rng.floats(g.outC)
            let plain = KernelISA.with(avx512: true) { run(x, g, w, 1, scale: nil, shift: shift, .swish) }
            var out = [Float](repeating: .nan, count: g.outputCount)
            var sums = [Float](repeating: .nan, count: g.batch * g.outH * g.outC)
            KernelISA.with(avx512: true) {
                shift.withUnsafeBufferPointer { sp in
                    depthwiseConv2d(input: x, geometry: g, multiplier: 1, kernel: w, output: &out,
                                    epilogue: Epilogue(shift: sp.baseAddress, activation: .swish), channelSums: &sums)
                }
            }
            XCTAssertEqual(out, plain, c.name)
            var want = [Double](repeating: 0, count: sums.count)
            for r in 0..<(g.batch * g.outH) { for ox in 0..<g.outW { for ch in 0..<g.outC {
                want[r * g.outC + ch] += Double(out[(r * g.outW + ox) * g.outC + ch])
            }}}
            assertClose(sums, want, tolerance: 1e-5 * Double(g.outW), "\(c.name) row sums")
        }
    }

    /// Two output rows of stride 1 go through the AVX-512 kernel together (sharing their input
    /// rows); computed one row per call, every row has the same bits, and so do the channel sums:
    /// the same sums in the same order. Top and bottom padding, 3x3 and 5x5, widths with strips
    /// of 8, 4, 3 and 2 and border pixels, channel counts that are not whole vectors, two images.
    func testRowPairsEqualSingleRows() throws {
        try XCTSkipUnless(KernelISA.available, "the row pairs are in the AVX-512 kernel")
        var rng = SeededRandom(31)
        for (h, w, c, k, p) in [(9, 15, 40, 5, ConvPadding.same), (8, 29, 33, 3, .same), (7, 8, 48, 5, .same),
                                (10, 17, 20, 3, .valid), (6, 22, 16, 5, .valid), (5, 4, 24, 3, .same)] {
            let g = Conv2DGeometry(batch: 2, inH: h, inW: w, inC: c, outC: c, kernelH: k, kernelW: k, strideH: 1,
                                   strideW: 1, padding: p)
            let x = rng.floats(g.inputCount), kernel = rng.floats(k * k * c), shift = rng.floats(c)
            let rows = g.batch * g.outH
            func run(rowsPerCall: Int) -> ([Float], [Float]) {
                var out = [Float](repeating: .nan, count: g.outputCount)
                var sums = [Float](repeating: .nan, count: rows * c)
                var cg = g.depthwiseForC
                shift.withUnsafeBufferPointer { sp in out.withUnsafeMutableBufferPointer { op in
                    sums.withUnsafeMutableBufferPointer { sumsp in
                        var e = Epilogue(shift: sp.baseAddress, activation: .swish).avx512(output: op.baseAddress!)!
                        e.channel_sums = sumsp.baseAddress
                        for r0 in stride(from: 0, to: rows, by: rowsPerCall) {
                            ck_depthwise_rows_avx512(&cg, x, kernel, op.baseAddress!, r0, min(rows, r0 + rowsPerCall), 0,
                                                     c, &e)
                        }
                    }
                }}
                return (out, sums)
            }
            let single = run(rowsPerCall: 1), paired = run(rowsPerCall: rows)
            XCTAssertEqual(paired.0, single.0, "\(h)x\(w)x\(c) \(k)x\(k) \(p)")
            XCTAssertEqual(paired.1, single.1, "\(h)x\(w)x\(c) \(k)x\(k) \(p) channel sums")
        }
    }

    func testSingleThreadAndOddWorkerCounts() {
        var rng = SeededRandom(8)
        let c = Self.cases[14]   // enough rows per worker to split
        let x = rng.floats(c.g.inputCount), w = rng.floats(c.g.kernelH * c.g.kernelW * c.g.outC)
        let want = reference(x, c.g, w, c.mult)
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        for t in [1, 3, 7] {
            RuntimeThreads.set(t)
            for isa in kernelISAs {
                let got = KernelISA.with(avx512: isa) { run(x, c.g, w, c.mult, scale: nil, shift: nil, .linear) }
                assertClose(got, want, tolerance: 1e-4, "threads \(t) \(isa ? "AVX-512" : "AVX2")")
            }
        }
    }
}

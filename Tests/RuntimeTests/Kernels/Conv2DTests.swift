import XCTest
import Graph
import TestSupport
@testable import Runtime

/// Naive Conv2D in Double: nested loops over NHWC / HWIO, zeros outside the input.
func referenceConv2D(_ x: [Float], _ g: Conv2DGeometry, _ w: [Float]) -> [Double] {
    var out = [Double](repeating: 0, count: g.outputCount)
    for n in 0..<g.batch { for oy in 0..<g.outH { for ox in 0..<g.outW { for co in 0..<g.outC {
        var acc = 0.0
        for ky in 0..<g.kernelH { for kx in 0..<g.kernelW {
            let iy = oy * g.strideH - g.padTop + ky * g.dilationH
            let ix = ox * g.strideW - g.padLeft + kx * g.dilationW
            guard iy >= 0, iy < g.inH, ix >= 0, ix < g.inW else { continue }
            for ci in 0..<g.inC {
                acc += Double(x[((n * g.inH + iy) * g.inW + ix) * g.inC + ci])
                     * Double(w[((ky * g.kernelW + kx) * g.inC + ci) * g.outC + co])
            }
        }}
        out[((n * g.outH + oy) * g.outW + ox) * g.outC + co] = acc
    }}}}
    return out
}

/// act(acc * scale[c] + shift[c] + residual[i]) in Double over [..., C]; softmax over C.
func referenceEpilogue(_ acc: [Double], channels: Int, scale: [Float]?, shift: [Float]?,
                       _ act: ActivationSpec, residual: [Float]? = nil) -> [Double] {
    var y = acc.indices.map { i -> Double in
        let c = i % channels
        return acc[i] * Double(scale?[c] ?? 1) + Double(shift?[c] ?? 0) + Double(residual?[i] ?? 0)
    }
    if act.kind == .softmax {
        for r in 0..<(y.count / channels) {
            let row = y[(r * channels)..<((r + 1) * channels)]
            let m = row.max()!
            let e = row.map { Foundation.exp($0 - m) }
            let s = e.reduce(0, +)
            for c in 0..<channels { y[r * channels + c] = e[c] / s }
        }
        return y
    }
    return y.map { referenceActivation(act, $0) }
}

/// Runs conv2d with the workspace it asks for; pointers to the optional scale/shift arrays.
func runConv2D(_ x: [Float], _ g: Conv2DGeometry, _ w: [Float], scale: [Float]?, shift: [Float]?,
               _ act: ActivationSpec, residual: [Float]? = nil,
               workspaceThreads: Int = RuntimeThreads.count) -> [Float] {
    var out = [Float](repeating: .nan, count: g.outputCount)
    var ws = [Float](repeating: .nan, count: conv2dWorkspaceCount(g, threads: workspaceThreads))
    let s = scale ?? [], b = shift ?? [], r = residual ?? []
    x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in
    s.withUnsafeBufferPointer { sp in b.withUnsafeBufferPointer { bp in r.withUnsafeBufferPointer { rp in
    out.withUnsafeMutableBufferPointer { op in ws.withUnsafeMutableBufferPointer { wsp in
        let e = Epilogue(scale: scale == nil ? nil : sp.baseAddress, shift: shift == nil ? nil : bp.baseAddress,
                         residual: residual == nil ? nil : rp.baseAddress, activation: act)
        conv2d(input: xp.baseAddress!, geometry: g, kernel: wp.baseAddress!, output: op.baseAddress!,
               epilogue: e, workspace: wsp.baseAddress, workspaceCount: wsp.count)
    }}}}}}}
    return out
}

final class Conv2DTests: XCTestCase {
    func testGeometryFollowsTensorFlowPadding() {
        func g(_ inH: Int, _ k: Int, _ s: Int, _ d: Int, _ p: ConvPadding) -> Conv2DGeometry {
            Conv2DGeometry(batch: 1, inH: inH, inW: inH, inC: 1, outC: 1, kernelH: k, kernelW: k,
                           strideH: s, strideW: s, dilationH: d, dilationW: d, padding: p)
        }
        // same, stride 2, odd input: out 4, total padding 2 split 1/1
        var x = g(7, 3, 2, 1, .same); XCTAssertEqual([x.outH, x.padTop, x.padBottom], [4, 1, 1])
        // same, stride 2, even input: out 3, total padding 1, all of it at the bottom
        x = g(6, 3, 2, 1, .same); XCTAssertEqual([x.outH, x.padTop, x.padBottom], [3, 0, 1])
        // same, stride 1, kernel 5: 2 before, 2 after
        x = g(9, 5, 1, 1, .same); XCTAssertEqual([x.outH, x.padTop, x.padBottom], [9, 2, 2])
        // same, stride 1, even kernel 4: total 3, 1 before and 2 after
        x = g(9, 4, 1, 1, .same); XCTAssertEqual([x.outH, x.padTop, x.padBottom], [9, 1, 2])
        // same with dilation 2, kernel 3: span 5
        x = g(8, 3, 1, 2, .same); XCTAssertEqual([x.outH, x.padTop, x.padBottom], [8, 2, 2])
        // same, stride 3, 1x1 kernel: no padding
        x = g(10, 1, 3, 1, .same); XCTAssertEqual([x.outH, x.padTop, x.padBottom], [4, 0, 0])
        // valid: floor((in - span) / stride) + 1
        x = g(7, 3, 2, 1, .valid); XCTAssertEqual([x.outH, x.padTop], [3, 0])
        x = g(7, 3, 1, 2, .valid); XCTAssertEqual(x.outH, 3)
        x = g(4, 5, 1, 1, .valid); XCTAssertEqual(x.outH, 0)
        // non-square
        let r = Conv2DGeometry(batch: 2, inH: 9, inW: 6, inC: 3, outC: 4, kernelH: 5, kernelW: 2,
                               strideH: 2, strideW: 3, padding: .same)
        XCTAssertEqual([r.outH, r.outW, r.padTop, r.padLeft, r.padBottom, r.padRight], [5, 2, 2, 0, 2, 0])   // width: out 2, total padding max(0, 3 + 2 - 6) = 0
    }

    struct Case { let name: String; let g: Conv2DGeometry }
    static func cases() -> [Case] {
        func c(_ name: String, n: Int = 1, h: Int, w: Int, ci: Int, co: Int, kh: Int, kw: Int,
               s: (Int, Int) = (1, 1), d: (Int, Int) = (1, 1), p: ConvPadding) -> Case {
            Case(name: name, g: Conv2DGeometry(batch: n, inH: h, inW: w, inC: ci, outC: co, kernelH: kh, kernelW: kw,
                                               strideH: s.0, strideW: s.1, dilationH: d.0, dilationW: d.1, padding: p))
        }
        return [
            c("pointwise", n: 2, h: 5, w: 7, ci: 13, co: 5, kh: 1, kw: 1, p: .same),
            c("pointwise large", n: 1, h: 37, w: 41, ci: 24, co: 40, kh: 1, kw: 1, p: .valid),
            c("3x3 same s1", n: 2, h: 9, w: 7, ci: 3, co: 13, kh: 3, kw: 3, p: .same),
            c("3x3 same s2 odd", h: 9, w: 11, ci: 5, co: 8, kh: 3, kw: 3, s: (2, 2), p: .same),
            c("3x3 same s2 even", n: 2, h: 10, w: 8, ci: 5, co: 3, kh: 3, kw: 3, s: (2, 2), p: .same),
            c("5x3 valid s(2,1) d(1,2)", h: 13, w: 11, ci: 4, co: 6, kh: 5, kw: 3, s: (2, 1), d: (1, 2), p: .valid),
            c("3x3 dilation 2 same", n: 2, h: 9, w: 10, ci: 5, co: 7, kh: 3, kw: 3, d: (2, 2), p: .same),
            c("2x4 even kernel same", h: 7, w: 9, ci: 3, co: 5, kh: 2, kw: 4, p: .same),
            c("1x1 stride 2", n: 2, h: 9, w: 8, ci: 6, co: 10, kh: 1, kw: 1, s: (2, 2), p: .valid),
            c("stem-like 3x3 s2 (direct path), 32+8+5 channels", h: 71, w: 69, ci: 3, co: 45, kh: 3, kw: 3, s: (2, 2), p: .same),
            c("direct path, 1 channel, dilated", n: 2, h: 12, w: 11, ci: 1, co: 32, kh: 3, kw: 3, d: (2, 2), p: .same),
            c("many row tiles", n: 2, h: 45, w: 47, ci: 8, co: 12, kh: 3, kw: 3, p: .same),
            c("small image, column split", h: 4, w: 5, ci: 32, co: 72, kh: 3, kw: 3, p: .same),
            c("kernel larger than input, same", h: 3, w: 2, ci: 2, co: 3, kh: 5, kw: 5, p: .same),
            // The AVX-512 direct kernel: strips of 8, of 4, single pixels; 16-lane channel tails.
            c("direct path, wide rows, 20 channels", h: 6, w: 40, ci: 3, co: 20, kh: 3, kw: 3, s: (2, 2), p: .same),
            c("direct path, 5x5 s1 valid, 2 channels in", n: 2, h: 9, w: 17, ci: 2, co: 50, kh: 5, kw: 5, p: .valid),
        ]
    }

    func testConvolutionsMatchReference() {
        var rng = SeededRandom(1)
        for c in Self.cases() {
            let g = c.g
            let x = rng.floats(g.inputCount), w = rng.floats(g.kernelH * g.kernelW * g.inC * g.outC)
            let scale = rng.floats(g.outC, 0.5, 1.5), shift = rng.floats(g.outC)
            let acc = referenceConv2D(x, g, w)
            let residual = rng.floats(g.outputCount)
            for isa in kernelISAs {
                let label = "\(c.name) \(isa ? "AVX-512" : "AVX2")"
                for (s, b, act) in [(nil, nil, ActivationSpec.linear), (scale, nil, .relu), (nil, shift, .swish),
                                    (scale, shift, .sigmoid), (scale, shift, ActivationSpec(.softmax)),
                                    (nil, shift, ActivationSpec(.elu))] as [([Float]?, [Float]?, ActivationSpec)] {
                    let got = KernelISA.with(avx512: isa) { runConv2D(x, g, w, scale: s, shift: b, act) }
                    let want = referenceEpilogue(acc, channels: g.outC, scale: s, shift: b, act)
                    assertClose(got, want, tolerance: 1e-4, "\(label) scale:\(s != nil) shift:\(b != nil) \(act.kind)")
                }
                // A skip connection added before the activation (ResNet: add, then relu).
                let got = KernelISA.with(avx512: isa) { runConv2D(x, g, w, scale: scale, shift: shift, .relu, residual: residual) }
                let want = referenceEpilogue(acc, channels: g.outC, scale: scale, shift: shift, .relu, residual: residual)
                assertClose(got, want, tolerance: 1e-4, "\(label) residual + relu")
            }
        }
    }

    func testEveryActivationInTheEpilogue() {
        var rng = SeededRandom(2)
        for g in [Self.cases()[0].g, Self.cases()[3].g, Self.cases()[9].g] {   // pointwise, im2col, direct
            let x = rng.floats(g.inputCount, -1, 1), w = rng.floats(g.kernelH * g.kernelW * g.inC * g.outC, -0.5, 0.5)
            let shift = rng.floats(g.outC)
            let acc = referenceConv2D(x, g, w)
            for act in allActivationSpecs {
                for isa in kernelISAs {
                    let got = KernelISA.with(avx512: isa) { runConv2D(x, g, w, scale: nil, shift: shift, act) }
                    let want = referenceEpilogue(acc, channels: g.outC, scale: nil, shift: shift, act)
                    // Relative for exponential, whose values reach e^5.
                    assertClose(zip(got, want).map { Double($0) / max(1, abs($1)) }, want.map { $0 / max(1, abs($0)) },
                                tolerance: 1e-4, "\(act) \(isa ? "AVX-512" : "AVX2")")
                }
            }
        }
    }

    /// A workspace sized for one worker must still work (fewer workers, same result); so must
    /// running single-threaded.
    func testSmallWorkspaceAndSingleThread() {
        var rng = SeededRandom(3)
        let g = Self.cases()[10].g
        let x = rng.floats(g.inputCount), w = rng.floats(g.kernelH * g.kernelW * g.inC * g.outC)
        let want = referenceConv2D(x, g, w)
        assertClose(runConv2D(x, g, w, scale: nil, shift: nil, .linear, workspaceThreads: 1), want, tolerance: 1e-4)
        let saved = RuntimeThreads.count
        RuntimeThreads.set(1)
        defer { RuntimeThreads.set(saved) }
        assertClose(runConv2D(x, g, w, scale: nil, shift: nil, .linear), want, tolerance: 1e-4)
        RuntimeThreads.set(3)   // more workers than cores, uneven splits
        assertClose(runConv2D(x, g, w, scale: nil, shift: nil, .linear, workspaceThreads: 3), want, tolerance: 1e-4)
    }
}

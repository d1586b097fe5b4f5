import XCTest
import Graph
import TestSupport
@testable import Runtime

/// Naive DepthwiseConv2D in Double (NHWC, HWCM), zeros outside the input.
func referenceDepthwise(_ x: [Float], _ g: Conv2DGeometry, _ m: Int, _ w: [Float]) -> [Double] {
    var out = [Double](repeating: 0, count: g.outputCount)
    for n in 0..<g.batch { for oy in 0..<g.outH { for ox in 0..<g.outW { for j in 0..<g.outC {
        var acc = 0.0
        for ky in 0..<g.kernelH { for kx in 0..<g.kernelW {
            let iy = oy * g.strideH - g.padTop + ky * g.dilationH
            let ix = ox * g.strideW - g.padLeft + kx * g.dilationW
            guard iy >= 0, iy < g.inH, ix >= 0, ix < g.inW else { continue }
            acc += Double(x[((n * g.inH + iy) * g.inW + ix) * g.inC + j / m])
                 * Double(w[(ky * g.kernelW + kx) * g.outC + j])
        }}
        out[((n * g.outH + oy) * g.outW + ox) * g.outC + j] = acc
    }}}}
    return out
}

/// Conv2D, DepthwiseConv2D, Dense, bias and epilogue gradients against central differences of
/// Double-precision reference forwards. Convolutions and dense layers are linear in each
/// argument, so the difference quotient is exact for any h (h = 0.5 here) up to Double rounding;
/// what remains is the float kernels' rounding: tolerance 2e-5 of the gradient's largest entry.
final class ConvBackwardTests: BackwardTestCase {
    let linearTolerance = 2e-5

    func geometry(n: Int = 2, h: Int, w: Int, ci: Int, co: Int, k: (Int, Int), s: (Int, Int) = (1, 1),
                  d: (Int, Int) = (1, 1), _ p: ConvPadding) -> Conv2DGeometry {
        Conv2DGeometry(batch: n, inH: h, inW: w, inC: ci, outC: co, kernelH: k.0, kernelW: k.1,
                       strideH: s.0, strideW: s.1, dilationH: d.0, dilationW: d.1, padding: p)
    }

    var convCases: [(String, Conv2DGeometry)] {
        [("3x3 same", geometry(h: 7, w: 9, ci: 5, co: 6, k: (3, 3), .same)),
         ("3x3 stride 2 same", geometry(h: 8, w: 7, ci: 3, co: 4, k: (3, 3), s: (2, 2), .same)),
         ("5x5 dilation 2 valid", geometry(h: 11, w: 10, ci: 4, co: 3, k: (5, 5), d: (2, 2), .valid)),
         ("2x3 stride (2,1) same, even kernel", geometry(h: 9, w: 6, ci: 2, co: 5, k: (2, 3), s: (2, 1), .same)),
         ("3x3 stride 2 dilation 2 same", geometry(n: 1, h: 10, w: 11, ci: 9, co: 10, k: (3, 3), s: (2, 2), d: (2, 2), .same)),
         ("1x1 pointwise", geometry(h: 5, w: 6, ci: 12, co: 10, k: (1, 1), .same)),
         ("1x1 pointwise, AVX-512 tiles and tails", geometry(h: 9, w: 11, ci: 45, co: 70, k: (1, 1), .same)),
         ("1x1 stride 2", geometry(h: 7, w: 7, ci: 6, co: 4, k: (1, 1), s: (2, 2), .valid)),
         ("explicit padding (ZeroPadding2D + valid)",
          Conv2DGeometry(batch: 2, inH: 8, inW: 8, inC: 3, outH: 4, outW: 4, outC: 8, kernelH: 3, kernelW: 3,
                         strideH: 2, strideW: 2, dilationH: 1, dilationW: 1, padTop: 0, padLeft: 1))]
    }

    /// Runs both conv gradients (with `bandRows`/`tileRows` overrides when given) and checks them.
    func checkConv(_ name: String, _ g: Conv2DGeometry, seed: UInt64, bandRows: Int? = nil, tileRows: Int? = nil) {
        var rng = SeededRandom(seed)
        let kCount = g.kernelH * g.kernelW * g.inC * g.outC
        let x = rng.floats(g.inputCount), w = rng.floats(kCount), wy = rng.floats(g.outputCount)
        let xb = Buf(x), kb = Buf(w), dy = Buf(wy)
        let dx = Buf(count: g.inputCount), dk = Buf(count: kCount)
        let tr = tileRows ?? min(conv2dTileRows(g), max(1, g.outputPixels))
        let wsCount = max(conv2dBackwardWorkspaceCount(g), RuntimeThreads.count * (tr * g.kernelH * g.kernelW * g.inC + kCount))
        let ws = Buf(count: wsCount)
        conv2dBackwardInput(dOutput: dy.c, geometry: g, kernel: kb.c, dInput: dx.p, accumulate: false,
                            workspace: ws.p, workspaceCount: ws.count, bandRows: bandRows ?? conv2dBandRows(g))
        conv2dBackwardKernel(input: xb.c, dOutput: dy.c, geometry: g, dKernel: dk.p, accumulate: false,
                             workspace: ws.p, workspaceCount: ws.count, tileRows: tr)
        checkGradient("\(name) dInput", at: x, analytic: dx.array, h: 0.5, tolerance: linearTolerance) {
            weightedSum(referenceConv2D($0, g, w), wy)
        }
        checkGradient("\(name) dKernel", at: w, analytic: dk.array, h: 0.5, tolerance: linearTolerance) {
            weightedSum(referenceConv2D(x, g, $0), wy)
        }
        // accumulate adds: running again doubles both.
        let once = (dx.array, dk.array)
        conv2dBackwardInput(dOutput: dy.c, geometry: g, kernel: kb.c, dInput: dx.p, accumulate: true,
                            workspace: ws.p, workspaceCount: ws.count, bandRows: bandRows ?? conv2dBandRows(g))
        conv2dBackwardKernel(input: xb.c, dOutput: dy.c, geometry: g, dKernel: dk.p, accumulate: true,
                             workspace: ws.p, workspaceCount: ws.count, tileRows: tr)
        assertClose(dx.array, once.0.map { 2 * $0 }, tolerance: 1e-5, "\(name) dInput accumulate")
        assertClose(dk.array, once.1.map { 2 * $0 }, tolerance: 1e-5, "\(name) dKernel accumulate")
    }

    func testConv2DGradientsMatchFiniteDifferences() {
        for (i, (name, g)) in convCases.enumerated() {
            for isa in kernelISAs {
                KernelISA.with(avx512: isa) { checkConv("\(name) \(isa ? "AVX-512" : "AVX2")", g, seed: UInt64(100 + i)) }
            }
        }
    }

    /// The AVX-512 packing of a 1x1 kernel's transpose (dInput's product), and of the kernel itself
    /// (the training forward's), against the scalar packing:
    /// 16 x 16 blocks with row and column tails, and a last panel 8 wide.
    func testTransposedPackMatchesScalarPack() throws {
        guard KernelISA.available else { throw XCTSkip("no AVX-512 on this machine") }
        for (rows, cols) in [(16, 16), (45, 70), (7, 5), (20, 33), (112, 672), (1152, 48), (9, 31), (17, 3)] {
            var rng = SeededRandom(UInt64(rows * 1000 + cols))
            let w = rng.floats(rows * cols)
            let count = pointwisePackedCount(k: cols, n: rows)
            let scalar = Buf(count: count, fill: -1), vector = Buf(count: count, fill: -1)
            packPointwise(transposeOf: Buf(w).c, rows: rows, cols: cols, into: scalar.p)
            packTransposedPointwiseAVX512(Buf(w).c, rows: rows, cols: cols, into: vector.p)
            XCTAssertEqual(scalar.array, vector.array, "\(rows)x\(cols)")
            // The kernel itself (k = rows, n = cols), as the training forward packs it.
            let plainCount = pointwisePackedCount(k: rows, n: cols)
            let plainScalar = Buf(count: plainCount, fill: -1), plainVector = Buf(count: plainCount, fill: -1)
            packPointwise(Buf(w).c, k: rows, n: cols, into: plainScalar.p)
            packPointwiseAVX512(Buf(w).c, k: rows, n: cols, into: plainVector.p)
            XCTAssertEqual(plainScalar.array, plainVector.array, "\(rows)x\(cols) untransposed")
        }
    }

    /// Many bands (both phases, several per image) and many pixel tiles over several workers.
    func testConv2DBandsAndTiles() {
        for (i, (name, g)) in convCases.enumerated() where !g.isPointwise {
            checkConv("\(name), minimal bands, 5-row tiles", g, seed: UInt64(200 + i),
                      bandRows: conv2dBandRows(g, targetFloats: 1), tileRows: 5)
        }
    }

    /// Public entry points with the advertised workspace, and with a one-thread workspace.
    func testConv2DPublicWorkspaceSizes() {
        let g = geometry(h: 13, w: 12, ci: 7, co: 9, k: (3, 3), s: (2, 2), .same)
        var rng = SeededRandom(5)
        let kCount = 9 * g.inC * g.outC
        let x = Buf(rng.floats(g.inputCount)), k = Buf(rng.floats(kCount)), dy = Buf(rng.floats(g.outputCount))
        var results: [[Float]] = []
        for threads in [RuntimeThreads.count, 1] {
            let ws = Buf(count: conv2dBackwardWorkspaceCount(g, threads: threads))
            let dx = Buf(count: g.inputCount), dk = Buf(count: kCount)
            conv2dBackwardInput(dOutput: dy.c, geometry: g, kernel: k.c, dInput: dx.p, accumulate: false,
                                workspace: ws.p, workspaceCount: ws.count)
            conv2dBackwardKernel(input: x.c, dOutput: dy.c, geometry: g, dKernel: dk.p, accumulate: false,
                                 workspace: ws.p, workspaceCount: ws.count)
            results.append(dx.array + dk.array)
        }
        assertClose(results[0], results[1], tolerance: 1e-5, "workspace for all workers vs one")
    }

    /// Stride 1 with multiplier 1 runs dInput as the forward kernel over dY with the kernel flipped
    /// (overwrite) and as a gather (accumulate): the accumulate check compares the two.
    func testDepthwiseGradientsMatchFiniteDifferences() {
        let cases: [(String, Conv2DGeometry, Int)] = [
            ("3x3 same C13", geometry(h: 7, w: 9, ci: 13, co: 13, k: (3, 3), .same), 1),
            ("5x5 stride 2 same C45", geometry(h: 9, w: 8, ci: 45, co: 45, k: (5, 5), s: (2, 2), .same), 1),
            ("3x3 stride 2 explicit pad C40",
             Conv2DGeometry(batch: 2, inH: 9, inW: 9, inC: 40, outH: 4, outW: 4, outC: 40, kernelH: 3, kernelW: 3,
                            strideH: 2, strideW: 2, dilationH: 1, dilationW: 1, padTop: 0, padLeft: 0), 1),
            ("3x3 dilation 2 multiplier 2 C5", geometry(h: 8, w: 9, ci: 5, co: 10, k: (3, 3), d: (2, 2), .same), 2),
            ("2x3 stride (1,2) valid multiplier 3 C3", geometry(h: 6, w: 11, ci: 3, co: 9, k: (2, 3), s: (1, 2), .valid), 3),
            ("5x5 same, wide C70 (parallel rows)", geometry(h: 12, w: 12, ci: 70, co: 70, k: (5, 5), .same), 1),
            ("3x3 dilation 2 valid C12", geometry(h: 9, w: 10, ci: 12, co: 12, k: (3, 3), d: (2, 2), .valid), 1),
            ("4x2 even kernel same C9", geometry(h: 7, w: 6, ci: 9, co: 9, k: (4, 2), .same), 1),
            ("5x5 same C100 (64-lane blocks and a tail)", geometry(n: 1, h: 8, w: 8, ci: 100, co: 100, k: (5, 5), .same), 1),
        ]
        for (i, (caseName, g, m)) in cases.enumerated() {
            for isa in kernelISAs {
                KernelISA.with(avx512: isa) {
                    let name = "\(caseName) \(isa ? "AVX-512" : "AVX2")"
                    var rng = SeededRandom(UInt64(300 + i))
                    let kCount = g.kernelH * g.kernelW * g.outC
                    let x = rng.floats(g.inputCount), w = rng.floats(kCount), wy = rng.floats(g.outputCount)
                    let xb = Buf(x), kb = Buf(w), dy = Buf(wy), dx = Buf(count: g.inputCount), dk = Buf(count: kCount)
                    let ws = Buf(count: depthwiseConv2dBackwardKernelWorkspaceCount(g))
                    depthwiseConv2dBackwardInput(dOutput: dy.c, geometry: g, multiplier: m, kernel: kb.c, dInput: dx.p,
                                                 accumulate: false)
                    depthwiseConv2dBackwardKernel(input: xb.c, dOutput: dy.c, geometry: g, multiplier: m, dKernel: dk.p,
                                                  accumulate: false, workspace: ws.p, workspaceCount: ws.count)
                    checkGradient("\(name) dInput", at: x, analytic: dx.array, h: 0.5, tolerance: linearTolerance) {
                        weightedSum(referenceDepthwise($0, g, m, w), wy)
                    }
                    checkGradient("\(name) dKernel", at: w, analytic: dk.array, h: 0.5, tolerance: linearTolerance) {
                        weightedSum(referenceDepthwise(x, g, m, $0), wy)
                    }
                    let once = (dx.array, dk.array)
                    depthwiseConv2dBackwardInput(dOutput: dy.c, geometry: g, multiplier: m, kernel: kb.c, dInput: dx.p,
                                                 accumulate: true)
                    depthwiseConv2dBackwardKernel(input: xb.c, dOutput: dy.c, geometry: g, multiplier: m, dKernel: dk.p,
                                                  accumulate: true, workspace: nil, workspaceCount: 0)
                    assertClose(dx.array, once.0.map { 2 * $0 }, tolerance: 1e-5, "\(name) dInput accumulate")
                    assertClose(dk.array, once.1.map { 2 * $0 }, tolerance: 1e-5, "\(name) dKernel accumulate")
                }
            }
        }
    }

    func referenceDense(_ x: [Float], rows: Int, inF: Int, _ w: [Float], outF: Int) -> [Double] {
        var y = [Double](repeating: 0, count: rows * outF)
        for r in 0..<rows { for o in 0..<outF {
            var s = 0.0
            for i in 0..<inF { s += Double(x[r * inF + i]) * Double(w[i * outF + o]) }
            y[r * outF + o] = s
        }}
        return y
    }

    func testDenseGradientsMatchFiniteDifferences() {
        // Small; many rows (row split); few rows, wide (column split); long and narrow (k split).
        for (i, (rows, inF, outF)) in [(5, 13, 7), (300, 40, 90), (8, 200, 300), (3000, 40, 9)].enumerated() {
            for isa in kernelISAs {
                KernelISA.with(avx512: isa) {
                    var rng = SeededRandom(UInt64(400 + i))
                    let x = rng.floats(rows * inF), w = rng.floats(inF * outF), wy = rng.floats(rows * outF)
                    let xb = Buf(x), kb = Buf(w), dy = Buf(wy), dx = Buf(count: x.count), dk = Buf(count: w.count)
                    let ws = Buf(count: denseBackwardKernelWorkspaceCount(inFeatures: inF, outFeatures: outF))
                    denseBackwardInput(dOutput: dy.c, rows: rows, inFeatures: inF, outFeatures: outF, kernel: kb.c,
                                       dInput: dx.p, accumulate: false)
                    denseBackwardKernel(input: xb.c, dOutput: dy.c, rows: rows, inFeatures: inF, outFeatures: outF,
                                        dKernel: dk.p, accumulate: false, workspace: ws.p, workspaceCount: ws.count)
                    let name = "dense \(rows)x\(inF)->\(outF) \(isa ? "AVX-512" : "AVX2")"
                    checkGradient("\(name) dInput", at: x, analytic: dx.array, h: 0.5, tolerance: linearTolerance, probes: 24) {
                        weightedSum(referenceDense($0, rows: rows, inF: inF, w, outF: outF), wy)
                    }
                    checkGradient("\(name) dKernel", at: w, analytic: dk.array, h: 0.5, tolerance: linearTolerance, probes: 24) {
                        weightedSum(referenceDense(x, rows: rows, inF: inF, $0, outF: outF), wy)
                    }
                    let once = dk.array
                    denseBackwardKernel(input: xb.c, dOutput: dy.c, rows: rows, inFeatures: inF, outFeatures: outF,
                                        dKernel: dk.p, accumulate: true, workspace: nil, workspaceCount: 0)
                    assertClose(dk.array, once.map { 2 * $0 }, tolerance: 1e-4, "\(name) dKernel accumulate, no workspace")
                }
            }
        }
    }

    func testBiasIsColumnSum() {
        var rng = SeededRandom(9)
        for (rows, c) in [(1, 3), (7, 13), (20_000, 24)] {
            let dy = rng.floats(rows * c)
            let db = Buf(count: c)
            biasBackward(dOutput: Buf(dy).c, rows: rows, channels: c, dBias: db.p, accumulate: false)
            var want = [Double](repeating: 0, count: c)
            for i in dy.indices { want[i % c] += Double(dy[i]) }
            // Float sums over 128-row blocks, blocks added in Double: for 20000 rows of [-1, 1) the
            // column sums (~50) come out within ~3e-5 (a relative 1e-6), so allow 1e-4.
            assertClose(db.array, want, tolerance: rows > 1000 ? 1e-4 : 1e-6, "bias \(rows)x\(c)")
        }
    }

    /// y = f(acc * scale + shift) for several activations, every output at once.
    func testEpilogueBackward() {
        let rows = 37, c = 19
        for (i, spec) in [ActivationSpec.linear, .swish, .relu6, ActivationSpec(.gelu), .sigmoid].enumerated() {
            var rng = SeededRandom(UInt64(500 + i))
            // Keep z away from relu6's kinks 0 and 6 so the differences never straddle them.
            var acc = rng.floats(rows * c, -3, 3)
            let scale = rng.floats(c, 0.5, 2), shift = rng.floats(c, -1, 1)
            for k in acc.indices {
                func z() -> Float { acc[k] * scale[k % c] + shift[k % c] }
                while abs(z()) < 0.02 || abs(z() - 6) < 0.02 { acc[k] += 0.05 }
            }
            let wy = rng.floats(rows * c)
            func loss(_ a: [Float], _ s: [Float], _ b: [Float]) -> Double {
                var l = 0.0
                for k in a.indices {
                    l += Double(wy[k]) * referenceActivation(spec, Double(a[k]) * Double(s[k % c]) + Double(b[k % c]))
                }
                return l
            }
            let dAcc = Buf(count: rows * c), dScale = Buf(count: c), dShift = Buf(count: c)
            let ab = Buf(acc), sb = Buf(scale), bb = Buf(shift)
            epilogueBackward(accumulator: ab.c, rows: rows, channels: c, scale: sb.c, shift: bb.c, activation: spec,
                             dOutput: Buf(wy).c, dAccumulator: dAcc.p, dScale: dScale.p, dShift: dShift.p,
                             accumulate: false)
            // Smooth functions: h = 1e-3, truncation ~1e-7; float transcendental rounding ~1e-6.
            let tol = 1e-4
            checkGradient("\(spec.kind) dAcc", at: acc, analytic: dAcc.array, h: 1e-3, tolerance: tol) { loss($0, scale, shift) }
            checkGradient("\(spec.kind) dScale", at: scale, analytic: dScale.array, h: 1e-3, tolerance: tol) { loss(acc, $0, shift) }
            checkGradient("\(spec.kind) dShift", at: shift, analytic: dShift.array, h: 1e-3, tolerance: tol) { loss(acc, scale, $0) }
        }
    }
}

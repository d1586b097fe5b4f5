import XCTest
import Graph
import TestSupport
@testable import Runtime

/// Grouped Conv2D (1 < groups < input channels) in training: the forward against the Double
/// reference convolution with the block-diagonal kernel (each output channel sees only its
/// group's input channels, Keras's definition), both backward products against central
/// differences of that reference. The convolution is linear in each argument, so the quotient is
/// exact up to Double rounding (h = 0.5); what remains is the float kernels' rounding.
final class GroupedConvTests: BackwardTestCase {
    let tolerance = 2e-5

    func geometry(n: Int = 2, h: Int, w: Int, ci: Int, co: Int, k: Int, s: Int = 1, d: Int = 1,
                  _ p: ConvPadding) -> Conv2DGeometry {
        Conv2DGeometry(batch: n, inH: h, inW: w, inC: ci, outC: co, kernelH: k, kernelW: k, strideH: s, strideW: s,
                       dilationH: d, dilationW: d, padding: p)
    }

    /// (name, whole-layer geometry, groups): RegNet's 3x3 with 8 channels per group (strided and
    /// not), a pointwise grouped convolution, groups of 2 channels (the direct path for small
    /// inputs), more outputs than inputs per group, dilation.
    var cases: [(String, Conv2DGeometry, Int)] {
        [("3x3 same, 3 groups of 8", geometry(h: 7, w: 6, ci: 24, co: 24, k: 3, .same), 3),
         ("3x3 stride 2 same, 7 groups of 8", geometry(h: 8, w: 9, ci: 56, co: 56, k: 3, s: 2, .same), 7),
         ("1x1, 4 groups", geometry(h: 5, w: 4, ci: 16, co: 12, k: 1, .valid), 4),
         ("3x3 valid, 3 groups of 2 in, 4 out", geometry(h: 6, w: 7, ci: 6, co: 12, k: 3, .valid), 3),
         ("3x3 dilation 2 same, 2 groups", geometry(n: 1, h: 9, w: 8, ci: 10, co: 6, k: 3, d: 2, .same), 2)]
    }

    func reference(_ x: [Float], _ g: Conv2DGeometry, groups: Int, _ w: [Float], bias: [Float]) -> [Double] {
        let dense = blockDiagonalKernel(w, taps: g.kernelH * g.kernelW, inChannels: g.inC, filters: g.outC, groups: groups)
        return referenceConv2D(x, g, dense).enumerated().map { $0.element + Double(bias[$0.offset % g.outC]) }
    }

    func testGroupedConvForwardAndGradientsMatchFiniteDifferences() {
        for (index, (name, g, groups)) in cases.enumerated() {
            var rng = SeededRandom(UInt64(300 + index))
            let kCount = g.kernelH * g.kernelW * (g.inC / groups) * g.outC
            let x = rng.floats(g.inputCount), w = rng.floats(kCount), bias = rng.floats(g.outC), wy = rng.floats(g.outputCount)
            let xb = Buf(x), kb = Buf(w), bb = Buf(bias), dy = Buf(wy)
            let y = Buf(count: g.outputCount), dx = Buf(count: g.inputCount), dk = Buf(count: kCount)
            for threads in [RuntimeThreads.count, 1] {
                let ws = Buf(count: groupedConv2dWorkspaceCount(g, groups: groups, threads: threads))
                groupedConv2d(input: xb.c, geometry: g, groups: groups, kernel: kb.c, bias: bb.c, output: y.p,
                              workspace: ws.p, workspaceCount: ws.count)
                assertClose(y.array, reference(x, g, groups: groups, w, bias: bias).map { Float($0) }, tolerance: 1e-5,
                            "\(name) forward, workspace for \(threads) threads")
                groupedConv2dBackwardInput(dOutput: dy.c, geometry: g, groups: groups, kernel: kb.c, dInput: dx.p,
                                           accumulate: false, workspace: ws.p, workspaceCount: ws.count)
                groupedConv2dBackwardKernel(input: xb.c, dOutput: dy.c, geometry: g, groups: groups, dKernel: dk.p,
                                            accumulate: false, workspace: ws.p, workspaceCount: ws.count)
                checkGradient("\(name) dInput", at: x, analytic: dx.array, h: 0.5, tolerance: tolerance) {
                    weightedSum(self.reference($0, g, groups: groups, w, bias: bias), wy)
                }
                checkGradient("\(name) dKernel", at: w, analytic: dk.array, h: 0.5, tolerance: tolerance) {
                    weightedSum(self.reference(x, g, groups: groups, $0, bias: bias), wy)
                }
                // accumulate adds: running again doubles both.
                let once = (dx.array, dk.array)
                groupedConv2dBackwardInput(dOutput: dy.c, geometry: g, groups: groups, kernel: kb.c, dInput: dx.p,
                                           accumulate: true, workspace: ws.p, workspaceCount: ws.count)
                groupedConv2dBackwardKernel(input: xb.c, dOutput: dy.c, geometry: g, groups: groups, dKernel: dk.p,
                                            accumulate: true, workspace: ws.p, workspaceCount: ws.count)
                assertClose(dx.array, once.0.map { 2 * $0 }, tolerance: 1e-5, "\(name) dInput accumulate")
                assertClose(dk.array, once.1.map { 2 * $0 }, tolerance: 1e-5, "\(name) dKernel accumulate")
            }
        }
    }
}

/// The reference: a grouped convolution's kernel (HWIO with I = inChannels / groups) as the equivalent ordinary
/// kernel: output channel f of group g = f / (filters / groups) sees only input channels
/// g * (inChannels / groups) ..< (g + 1) * (inChannels / groups); the other taps are zero, which
/// adds exact zeros to each sum. It costs `groups` times the multiply-adds of a grouped kernel.
func blockDiagonalKernel(_ kernel: [Float], taps: Int, inChannels: Int, filters: Int, groups: Int) -> [Float] {
    let inPerGroup = inChannels / groups, outPerGroup = filters / groups
    precondition(kernel.count == taps * inPerGroup * filters, "grouped kernel size")
    var dense = [Float](repeating: 0, count: taps * inChannels * filters)
    for t in 0..<taps {
        for f in 0..<filters {
            let g = f / outPerGroup
            for i in 0..<inPerGroup {
                dense[(t * inChannels + g * inPerGroup + i) * filters + f] = kernel[(t * inPerGroup + i) * filters + f]
            }
        }
    }
    return dense
}

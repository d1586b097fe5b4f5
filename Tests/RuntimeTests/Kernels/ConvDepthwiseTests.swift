import XCTest
import Graph
import TestSupport
@testable import Runtime

/// The fused stem + depthwise step against the two kernels run one after the other (the direct
/// convolution and the depthwise kernel, which their own tests check against Double references),
/// over the shapes that exercise the ring: stems of stride 1 and 2 with same and valid padding,
/// 1-4 input channels, depthwise 3x3 and 5x5 of stride 1 and 2, widths that are not whole strips,
/// channel counts that are not whole vectors, several images, bands across workers.
final class ConvDepthwiseTests: XCTestCase {
    struct Case {
        let n: Int, h: Int, w: Int, inC: Int, c: Int
        let sk: Int, ss: Int, sp: ConvPadding       // stem kernel, stride, padding
        let k: Int, s: Int, p: ConvPadding           // depthwise
    }

    static let cases: [Case] = [
        Case(n: 1, h: 32, w: 30, inC: 3, c: 32, sk: 3, ss: 2, sp: .valid, k: 3, s: 1, p: .same),   // EfficientNet's
        Case(n: 2, h: 19, w: 23, inC: 3, c: 16, sk: 3, ss: 2, sp: .same, k: 3, s: 2, p: .same),
        Case(n: 1, h: 13, w: 21, inC: 1, c: 13, sk: 3, ss: 1, sp: .same, k: 5, s: 1, p: .same),
        Case(n: 3, h: 11, w: 9, inC: 4, c: 40, sk: 5, ss: 2, sp: .same, k: 5, s: 2, p: .valid),
        Case(n: 1, h: 60, w: 20, inC: 3, c: 24, sk: 3, ss: 1, sp: .valid, k: 3, s: 1, p: .valid),  // many bands
    ]

    func testFusedEqualsStemThenDepthwise() throws {
        try XCTSkipUnless(KernelISA.available, "no AVX-512 here: plans never contain the fused step on this machine")
        var rng = SeededRandom(23)
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        for c in Self.cases {
            let cg = Conv2DGeometry(batch: c.n, inH: c.h, inW: c.w, inC: c.inC, outC: c.c, kernelH: c.sk, kernelW: c.sk,
                                    strideH: c.ss, strideW: c.ss, padding: c.sp)
            let g = Conv2DGeometry(batch: c.n, inH: cg.outH, inW: cg.outW, inC: c.c, outC: c.c, kernelH: c.k,
                                   kernelW: c.k, strideH: c.s, strideW: c.s, padding: c.p)
            XCTAssertTrue(conv2dIsDirect(cg))
            let x = rng.floats(c.n * c.h * c.w * c.inC, -2, 2), sk = rng.floats(c.sk * c.sk * c.inC * c.c, -0.5, 0.5)
            let ss = rng.floats(c.c), dk = rng.floats(c.k * c.k * c.c, -0.4, 0.4), ds = rng.floats(c.c)
            for (sa, da) in [(ActivationSpec.swish, ActivationSpec.swish), (.relu6, .linear), (.linear, .sigmoid)] {
                // Reference: the stem stored whole, then the depthwise kernel.
                var stem = [Float](repeating: 0, count: cg.outputCount)
                var want = [Float](repeating: 0, count: g.outputCount)
                KernelISA.with(avx512: true) {
                    ss.withUnsafeBufferPointer { ssp in ds.withUnsafeBufferPointer { dsp in
                        conv2d(input: x, geometry: cg, kernel: sk, output: &stem,
                               epilogue: Epilogue(shift: ssp.baseAddress, activation: sa), workspace: nil, workspaceCount: 0)
                        depthwiseConv2d(input: stem, geometry: g, multiplier: 1, kernel: dk, output: &want,
                                        epilogue: Epilogue(shift: dsp.baseAddress, activation: da))
                    }}
                }
                for threads in [1, 2, 3] {
                    RuntimeThreads.set(threads)
                    let wsCount = expandDepthwiseWorkspaceCount(kernelH: c.k, inW: g.inW, channels: c.c)
                    var ws = [Float](repeating: .nan, count: wsCount)
                    var got = [Float](repeating: .nan, count: g.outputCount)
                    KernelISA.with(avx512: true) {
                        ss.withUnsafeBufferPointer { ssp in ds.withUnsafeBufferPointer { dsp in
                            convDepthwiseConv(input: x, convGeometry: cg, convKernel: sk,
                                              convEpilogue: Epilogue(shift: ssp.baseAddress, activation: sa),
                                              geometry: g, kernel: dk,
                                              epilogue: Epilogue(shift: dsp.baseAddress, activation: da),
                                              output: &got, workspace: &ws, workspaceCount: wsCount)
                        }}
                    }
                    // The same arithmetic in the same order: equal to the last bit.
                    XCTAssertEqual(got, want, "\(c) \(sa.kind)/\(da.kind) threads \(threads)")
                }
            }
        }
    }

    /// The fused step's channel sums per output row equal the unfused depthwise kernel's, bit for
    /// bit (the same values summed in the same order).
    func testFusedChannelSums() throws {
        try XCTSkipUnless(KernelISA.available, "no AVX-512 here: plans never contain the fused step on this machine")
        var rng = SeededRandom(24)
        let c = Self.cases[1]
        let cg = Conv2DGeometry(batch: c.n, inH: c.h, inW: c.w, inC: c.inC, outC: c.c, kernelH: c.sk, kernelW: c.sk,
                                strideH: c.ss, strideW: c.ss, padding: c.sp)
        let g = Conv2DGeometry(batch: c.n, inH: cg.outH, inW: cg.outW, inC: c.c, outC: c.c, kernelH: c.k, kernelW: c.k,
                               strideH: c.s, strideW: c.s, padding: c.p)
        let x = rng.floats(c.n * c.h * c.w * c.inC), sk = rng.floats(c.sk * c.sk * c.inC * c.c, -0.5, 0.5)
        let dk = rng.floats(c.k * c.k * c.c)
        let wsCount = expandDepthwiseWorkspaceCount(kernelH: c.k, inW: g.inW, channels: c.c)
        var ws = [Float](repeating: 0, count: wsCount), out = [Float](repeating: 0, count: g.outputCount)
        var sums = [Float](repeating: .nan, count: g.batch * g.outH * g.outC)
        var stem = [Float](repeating: 0, count: cg.outputCount), ref = out
        var refSums = sums
        KernelISA.with(avx512: true) {
            convDepthwiseConv(input: x, convGeometry: cg, convKernel: sk, convEpilogue: Epilogue(activation: .swish),
                              geometry: g, kernel: dk, epilogue: Epilogue(activation: .swish), output: &out,
                              workspace: &ws, workspaceCount: wsCount, channelSums: &sums)
            conv2d(input: x, geometry: cg, kernel: sk, output: &stem, epilogue: Epilogue(activation: .swish),
                   workspace: nil, workspaceCount: 0)
            depthwiseConv2d(input: stem, geometry: g, multiplier: 1, kernel: dk, output: &ref,
                            epilogue: Epilogue(activation: .swish), channelSums: &refSums)
        }
        XCTAssertEqual(out, ref)
        XCTAssertEqual(sums, refSums)
        XCTAssertFalse(sums.contains { $0.isNaN })
    }

    /// Under AVX-512 the seed EfficientNetB0's plan fuses its stem with block1a's depthwise (and
    /// squeeze-and-excitation still pools from that step's row sums); under AVX2 it does not. Its
    /// outputs are checked against Keras's by FixtureOutputTests under both.
    func testSeedPlanFusesTheStemOnlyUnderAVX512() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_effnetb0" })
        let model = try LoadedModel.load(path: c.path(c.model!)!, archPath: nil)
        func fused(_ isa: Bool) throws -> [String] {
            try KernelISA.with(avx512: isa) {
                try InferenceSession(model: model).plan(for: [[1, 228, 228, 3]]).nodes.compactMap { node in
                    guard case .convDepthwise = node.op else { return nil }
                    return node.layer.components(separatedBy: "+").map { $0.components(separatedBy: "/").last! }
                        .joined(separator: "+")
                }
            }
        }
        XCTAssertEqual(try fused(false), [])
        if KernelISA.available {
            XCTAssertEqual(try fused(true), ["stem_conv+stem_bn+stem_activation+block1a_dwconv+block1a_bn+block1a_activation"])
        }
    }
}

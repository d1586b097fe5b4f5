import XCTest
import Graph
import TestSupport
@testable import Runtime

/// The fused expansion + depthwise step against the two kernels run one after the other (which
/// their own tests check against Double references), over the shapes that exercise the ring:
/// strides 1 and 2, 3x3 and 5x5, same and valid padding, widths that are not whole tiles or
/// strips, channel counts that are not whole vectors, several images, bands across workers.
final class ExpandDepthwiseTests: XCTestCase {
    struct Case { let n: Int, h: Int, w: Int, inC: Int, c: Int, k: Int, s: Int, p: ConvPadding }

    static let cases: [Case] = [
        Case(n: 1, h: 9, w: 7, inC: 3, c: 13, k: 3, s: 1, p: .same),
        Case(n: 2, h: 12, w: 23, inC: 16, c: 96, k: 3, s: 2, p: .same),
        Case(n: 1, h: 11, w: 29, inC: 24, c: 144, k: 5, s: 2, p: .same),
        Case(n: 2, h: 10, w: 17, inC: 40, c: 40, k: 5, s: 1, p: .same),
        Case(n: 1, h: 8, w: 14, inC: 8, c: 20, k: 3, s: 1, p: .valid),
        Case(n: 3, h: 6, w: 5, inC: 5, c: 33, k: 5, s: 2, p: .valid),
        Case(n: 1, h: 30, w: 30, inC: 16, c: 32, k: 3, s: 1, p: .same),  // many bands
    ]

    func testFusedEqualsExpansionThenDepthwise() throws {
        try XCTSkipUnless(KernelISA.available, "no AVX-512 here: plans never contain the fused step on this machine")
        var rng = SeededRandom(21)
        let saved = RuntimeThreads.count
        defer { RuntimeThreads.set(saved) }
        for c in Self.cases {
            let g = Conv2DGeometry(batch: c.n, inH: c.h, inW: c.w, inC: c.c, outC: c.c, kernelH: c.k, kernelW: c.k,
                                   strideH: c.s, strideW: c.s, padding: c.p)
            let x = rng.floats(c.n * c.h * c.w * c.inC), ek = rng.floats(c.inC * c.c, -0.5, 0.5)
            let es = rng.floats(c.c), dk = rng.floats(c.k * c.k * c.c, -0.4, 0.4), ds = rng.floats(c.c)
            var packed = [Float](repeating: 0, count: pointwisePackedCount(k: c.inC, n: c.c))
            packPointwise(ek, k: c.inC, n: c.c, into: &packed)
            for (ea, da) in [(ActivationSpec.swish, ActivationSpec.swish), (.relu6, .linear), (.linear, .sigmoid)] {
                // Reference: the expansion stored whole, then the depthwise kernel.
                var expanded = [Float](repeating: 0, count: c.n * c.h * c.w * c.c)
                var want = [Float](repeating: 0, count: g.outputCount)
                KernelISA.with(avx512: true) {
                    es.withUnsafeBufferPointer { esp in ds.withUnsafeBufferPointer { dsp in
                        pointwiseConv(m: c.n * c.h * c.w, n: c.c, k: c.inC, input: x, lda: c.inC, packed: packed,
                                      output: &expanded, ldc: c.c,
                                      epilogue: Epilogue(shift: esp.baseAddress, activation: ea))
                        depthwiseConv2d(input: expanded, geometry: g, multiplier: 1, kernel: dk, output: &want,
                                        epilogue: Epilogue(shift: dsp.baseAddress, activation: da))
                    }}
                }
                for threads in [1, 2, 3] {
                    RuntimeThreads.set(threads)
                    let wsCount = expandDepthwiseWorkspaceCount(kernelH: c.k, inW: c.w, channels: c.c)
                    var ws = [Float](repeating: .nan, count: wsCount)
                    var got = [Float](repeating: .nan, count: g.outputCount)
                    KernelISA.with(avx512: true) {
                        es.withUnsafeBufferPointer { esp in ds.withUnsafeBufferPointer { dsp in
                            expandDepthwiseConv(input: x, inChannels: c.inC, expandPacked: packed,
                                                expandEpilogue: Epilogue(shift: esp.baseAddress, activation: ea),
                                                geometry: g, kernel: dk,
                                                epilogue: Epilogue(shift: dsp.baseAddress, activation: da),
                                                output: &got, workspace: &ws, workspaceCount: wsCount)
                        }}
                    }
                    // The same arithmetic in the same order: equal to the last bit.
                    XCTAssertEqual(got, want, "\(c) \(ea.kind)/\(da.kind) threads \(threads)")
                }
            }
        }
    }

    /// The fused step's channel sums per output row equal the row sums of what it stored.
    func testFusedChannelSums() throws {
        try XCTSkipUnless(KernelISA.available, "no AVX-512 here: plans never contain the fused step on this machine")
        var rng = SeededRandom(22)
        let c = Self.cases[2]
        let g = Conv2DGeometry(batch: c.n, inH: c.h, inW: c.w, inC: c.c, outC: c.c, kernelH: c.k, kernelW: c.k,
                               strideH: c.s, strideW: c.s, padding: c.p)
        let x = rng.floats(c.n * c.h * c.w * c.inC), ek = rng.floats(c.inC * c.c, -0.5, 0.5), dk = rng.floats(c.k * c.k * c.c)
        var packed = [Float](repeating: 0, count: pointwisePackedCount(k: c.inC, n: c.c))
        packPointwise(ek, k: c.inC, n: c.c, into: &packed)
        let wsCount = expandDepthwiseWorkspaceCount(kernelH: c.k, inW: c.w, channels: c.c)
        var ws = [Float](repeating: 0, count: wsCount), out = [Float](repeating: 0, count: g.outputCount)
        var sums = [Float](repeating: .nan, count: g.batch * g.outH * g.outC)
        KernelISA.with(avx512: true) {
            expandDepthwiseConv(input: x, inChannels: c.inC, expandPacked: packed, expandEpilogue: Epilogue(activation: .swish),
                                geometry: g, kernel: dk, epilogue: Epilogue(activation: .swish), output: &out,
                                workspace: &ws, workspaceCount: wsCount, channelSums: &sums)
        }
        var want = [Double](repeating: 0, count: sums.count)
        for r in 0..<(g.batch * g.outH) { for ox in 0..<g.outW { for ch in 0..<g.outC {
            want[r * g.outC + ch] += Double(out[(r * g.outW + ox) * g.outC + ch])
        }}}
        assertClose(sums, want, tolerance: 1e-4, "row sums")
    }

    /// Under AVX-512 the seed EfficientNetB0's plan fuses its large early expansions; under AVX2
    /// nothing is fused (the step has no AVX2 kernel). Its outputs are checked against Keras's by
    /// FixtureOutputTests under both.
    func testSeedPlanFusesTheLargeExpansionsOnlyUnderAVX512() throws {
        let c = try XCTUnwrap(fixtureCases().first { $0.name == "k2_seed_effnetb0" })
        let model = try LoadedModel.load(path: c.path(c.model!)!, archPath: nil)
        func fused(_ isa: Bool) throws -> [String] {
            try KernelISA.with(avx512: isa) {
                try InferenceSession(model: model).plan(for: [[1, 228, 228, 3]]).nodes.compactMap { node in
                    if case .expandDepthwise = node.op { return node.layer.components(separatedBy: "/")[1].prefix(7).description }
                    return nil
                }
            }
        }
        XCTAssertEqual(try fused(false), [])
        if KernelISA.available { XCTAssertEqual(try fused(true), ["block2a", "block2b", "block3a"]) }
        // Every squeeze-and-excitation squeeze (16 blocks) pools from its depthwise step's row sums.
        func pooledFromSums(_ isa: Bool) throws -> Int {
            try KernelISA.with(avx512: isa) {
                try InferenceSession(model: model).plan(for: [[1, 228, 228, 3]]).nodes.filter {
                    if case .meanOfRowSums = $0.op { return true }
                    return false
                }.count
            }
        }
        XCTAssertEqual(try pooledFromSums(false), 0)
        if KernelISA.available { XCTAssertEqual(try pooledFromSums(true), 16) }
    }
}

// Hand-run throughput check, not a test: EfficientNetB0's layer sequence at 228x228 (stem,
// 16 MBConv blocks with squeeze-and-excitation, top conv, pooling, classifier) run through these
// kernels with random weights, BN folded into scale/shift, activations and the skip Adds fused
// into the epilogues, ZeroPadding2D of the stride-2 blocks folded into the depthwise geometry. It bounds what an execution plan built
// on these kernels can reach (no graph overhead, no preprocessing).
//   KERNEL_BENCH=1 [KERNEL_BENCH_THREADS=n] swift test -c release -Xswiftc -enable-testing \
//       --filter EfficientNetChainThroughput
import Foundation
import Dispatch
import XCTest
import Graph
@testable import Runtime

final class EfficientNetChainThroughput: XCTestCase {
    /// Weights for one layer with He-style scale so activations neither vanish nor explode.
    final class Layer {
        var w: [Float], scale: [Float], shift: [Float]
        init(_ count: Int, fanIn: Int, out: Int, _ rng: inout SeededRandom) {
            let a = Float(3.0 / Double(fanIn)).squareRoot()
            w = rng.floats(count, -a, a)
            scale = rng.floats(out, 0.8, 1.2)
            shift = rng.floats(out, -0.1, 0.1)
        }
    }

    struct Block { let k: Int, stride: Int, cin: Int, cout: Int, expand: Int }

    func testChain() throws {
        let env = ProcessInfo.processInfo.environment
        try XCTSkipUnless(env["KERNEL_BENCH"] != nil, "set KERNEL_BENCH=1 to run")
        if let t = env["KERNEL_BENCH_THREADS"].flatMap(Int.init) { RuntimeThreads.set(t) }
        for batch in [1, 8] { run(batch: batch) }
    }

    func run(batch n: Int) {
        var rng = SeededRandom(3)
        var blocks: [Block] = []
        for (k, repeats, cin, cout, e, s) in [(3, 1, 32, 16, 1, 1), (3, 2, 16, 24, 6, 2), (5, 2, 24, 40, 6, 2),
                                              (3, 3, 40, 80, 6, 2), (5, 3, 80, 112, 6, 1), (5, 4, 112, 192, 6, 2),
                                              (3, 1, 192, 320, 6, 1)] {
            for r in 0..<repeats {
                blocks.append(Block(k: k, stride: r == 0 ? s : 1, cin: r == 0 ? cin : cout, cout: cout, expand: e))
            }
        }
        // Buffers big enough for the largest activation (N x 114 x 114 x 96).
        let big = n * 114 * 114 * 96
        let p = (0..<4).map { _ -> UnsafeMutablePointer<Float> in
            let b = UnsafeMutablePointer<Float>.allocate(capacity: big)
            b.initialize(repeating: 0, count: big)
            return b
        }
        defer { p.forEach { $0.deallocate() } }
        var input = rng.floats(n * 228 * 228 * 3, 0, 1)
        let stem = Layer(27 * 32, fanIn: 27, out: 32, &rng)
        struct BlockWeights { let expand: Layer?, dw: Layer, seReduce: Layer, seExpand: Layer, project: Layer }
        let weights = blocks.map { b -> BlockWeights in
            let c = b.cin * b.expand, se = max(1, b.cin / 4)
            return BlockWeights(
                expand: b.expand == 1 ? nil : Layer(b.cin * c, fanIn: b.cin, out: c, &rng),
                dw: Layer(b.k * b.k * c, fanIn: b.k * b.k, out: c, &rng),
                seReduce: Layer(c * se, fanIn: c, out: se, &rng), seExpand: Layer(se * c, fanIn: se, out: c, &rng),
                project: Layer(c * b.cout, fanIn: c, out: b.cout, &rng))
        }
        let top = Layer(320 * 1280, fanIn: 320, out: 1280, &rng)
        let classifier = Layer(1280 * 1000, fanIn: 1280, out: 1000, &rng)
        let stemGeometry = Conv2DGeometry(batch: n, inH: 228, inW: 228, inC: 3, outH: 114, outW: 114, outC: 32,
                                          kernelH: 3, kernelW: 3, strideH: 2, strideW: 2, dilationH: 1, dilationW: 1,
                                          padTop: 0, padLeft: 0)
        var workspace = [Float](repeating: 0, count: conv2dWorkspaceCount(stemGeometry))
        var se0 = [Float](repeating: 0, count: n * 1152), se1 = se0, se2 = se0
        var pooled = [Float](repeating: 0, count: n * 1280), logits = [Float](repeating: 0, count: n * 1000)

        func threadCPU() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        }
        // KERNEL_BENCH_PROFILE=1: thread CPU time per kind of layer (meaningful with one worker).
        let profile = ProcessInfo.processInfo.environment["KERNEL_BENCH_PROFILE"] != nil
        var spent: [String: Double] = [:]
        func timed(_ what: String, _ body: () -> Void) {
            guard profile else { body(); return }
            let c0 = threadCPU()
            body()
            spent[what, default: 0] += threadCPU() - c0
        }
        func forward() {
            do {
                input.withUnsafeMutableBufferPointer { x in workspace.withUnsafeMutableBufferPointer { ws in
                    stem.w.withUnsafeBufferPointer { w in stem.scale.withUnsafeBufferPointer { s in stem.shift.withUnsafeBufferPointer { t in
                        timed("stem") {
                        conv2d(input: x.baseAddress!, geometry: stemGeometry, kernel: w.baseAddress!, output: p[0],
                               epilogue: Epilogue(scale: s.baseAddress, shift: t.baseAddress, activation: .swish),
                               workspace: ws.baseAddress, workspaceCount: ws.count)
                        }
                    }}}
                }}
                var cur = 0, h = 114
                for (b, lw) in zip(blocks, weights) {
                    let c = b.cin * b.expand
                    let others = (0..<4).filter { $0 != cur }
                    var x = p[cur]
                    let expanded = p[others[0]], dwOut = p[others[1]], out = p[others[2]]
                    if let e = lw.expand {
                        timed("expand 1x1") { pointwise(UnsafePointer(x), n * h * h, b.cin, e, c, expanded, .swish) }
                        x = expanded
                    }
                    // Keras: ZeroPadding2D(correct_pad) + valid for stride 2, same otherwise.
                    let pad = b.stride == 2 ? b.k / 2 - (1 - h % 2) : b.k / 2
                    let oh = b.stride == 2 ? (h + pad + b.k / 2 - b.k) / 2 + 1 : h
                    let g = Conv2DGeometry(batch: n, inH: h, inW: h, inC: c, outH: oh, outW: oh, outC: c,
                                           kernelH: b.k, kernelW: b.k, strideH: b.stride, strideW: b.stride,
                                           dilationH: 1, dilationW: 1, padTop: pad, padLeft: pad)
                    lw.dw.w.withUnsafeBufferPointer { w in lw.dw.scale.withUnsafeBufferPointer { s in lw.dw.shift.withUnsafeBufferPointer { t in
                        timed("depthwise k\(b.k) s\(b.stride)") {
                        depthwiseConv2d(input: UnsafePointer(x), geometry: g, multiplier: 1, kernel: w.baseAddress!,
                                        output: dwOut, epilogue: Epilogue(scale: s.baseAddress, shift: t.baseAddress, activation: .swish))
                        }
                    }}}
                    // Squeeze and excitation.
                    let se = max(1, b.cin / 4)
                    se0.withUnsafeMutableBufferPointer { s0 in se1.withUnsafeMutableBufferPointer { s1 in se2.withUnsafeMutableBufferPointer { s2 in
                        timed("SE pool+dense") {
                        globalAveragePool(input: UnsafePointer(dwOut), batch: n, spatial: oh * oh, channels: c, output: s0.baseAddress!)
                        pointwise(UnsafePointer(s0.baseAddress!), n, c, lw.seReduce, se, s1.baseAddress!, .swish, bn: false)
                        pointwise(UnsafePointer(s1.baseAddress!), n, se, lw.seExpand, c, s2.baseAddress!, .sigmoid, bn: false)
                        }
                        timed("SE channelScale") {
                        channelScale(UnsafePointer(dwOut), batch: n, spatial: oh * oh, channels: c,
                                     scale: UnsafePointer(s2.baseAddress!), output: dwOut)
                        }
                    }}}
                    // Project with BN, and the skip connection's Add fused into its epilogue.
                    let skip = b.stride == 1 && b.cin == b.cout ? UnsafePointer(p[cur]) : nil
                    timed("project 1x1 (+ add)") {
                        pointwise(UnsafePointer(dwOut), n * oh * oh, c, lw.project, b.cout, out, .linear, residual: skip)
                    }
                    cur = others[2]; h = oh
                }
                timed("top 1x1 + head") {
                pointwise(UnsafePointer(p[cur]), n * h * h, 320, top, 1280, p[(cur + 1) % 4], .swish)
                pooled.withUnsafeMutableBufferPointer { pp in logits.withUnsafeMutableBufferPointer { lp in
                    globalAveragePool(input: UnsafePointer(p[(cur + 1) % 4]), batch: n, spatial: h * h, channels: 1280,
                                      output: pp.baseAddress!)
                    pointwise(UnsafePointer(pp.baseAddress!), n, 1280, classifier, 1000, lp.baseAddress!,
                              ActivationSpec(.softmax), bn: false)
                }}
                }
            }
        }

        func processCPU() -> Double {
            var ts = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
            return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
        }
        forward()
        var best = Double.infinity, bestCPU = Double.infinity, bestProcessCPU = Double.infinity
        for _ in 0..<7 {
            let t0 = DispatchTime.now().uptimeNanoseconds, c0 = threadCPU(), p0 = processCPU()
            forward()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
            bestCPU = min(bestCPU, threadCPU() - c0)
            bestProcessCPU = min(bestProcessCPU, processCPU() - p0)
        }
        XCTAssertTrue(logits.allSatisfy { $0.isFinite })
        // With one worker everything runs on this thread, so its CPU time is the compute time
        // even when other processes share the cores.
        // With more, the CPU time of all threads together shows how much the split costs in work
        // (the wall time on a shared machine depends on whether the other core is free).
        let cpu = RuntimeThreads.count == 1 ? String(format: " (thread CPU %.2f ms)", bestCPU * 1e3)
            : String(format: " (CPU of all threads %.2f ms)", bestProcessCPU * 1e3)
        print(String(format: "BENCH EfficientNetB0 chain 228x228 batch %d, %d workers: %.2f ms/batch, %.1f images/s%@",
                     n, RuntimeThreads.count, best * 1e3, Double(n) / best, cpu as NSString))
        let runs = 8.0   // forward() ran once to warm up and 7 times timed
        for (what, t) in spent.sorted(by: { $0.value > $1.value }) {
            print(String(format: "BENCH   %-22@ %7.3f ms/batch", what as NSString, t / runs * 1e3))
        }
    }

    /// 1x1 conv / dense with BN scale+shift (or bias only) and activation.
    func pointwise(_ x: UnsafePointer<Float>, _ rows: Int, _ cin: Int, _ l: Layer, _ cout: Int,
                   _ y: UnsafeMutablePointer<Float>, _ act: ActivationSpec, bn: Bool = true,
                   residual: UnsafePointer<Float>? = nil) {
        l.w.withUnsafeBufferPointer { w in l.scale.withUnsafeBufferPointer { s in l.shift.withUnsafeBufferPointer { t in
            dense(input: x, rows: rows, inFeatures: cin, kernel: w.baseAddress!, outFeatures: cout, output: y,
                  epilogue: Epilogue(scale: bn ? s.baseAddress : nil, shift: t.baseAddress, residual: residual,
                                     activation: act))
        }}}
    }
}

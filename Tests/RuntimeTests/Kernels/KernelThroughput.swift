// A throughput check to run by hand, not a test: it prints GFLOP/s and asserts nothing.
//   KERNEL_BENCH=1 swift test -c release -Xswiftc -enable-testing --filter KernelThroughput
// (Skipped unless KERNEL_BENCH is set. KERNEL_BENCH_THREADS=n picks the worker count,
// KERNEL_BENCH_ONLY=text the cases whose name contains it. With one worker the times are the
// thread's CPU time, which other processes on a shared machine disturb less than wall time.)
import Foundation
import Dispatch
import XCTest
import Graph
@testable import Runtime

final class KernelThroughput: XCTestCase {
    /// Best time per call in seconds over a few rounds of roughly 0.1 s each. With one worker the
    /// kernels run on this thread, so its CPU time is used: other processes on a shared machine
    /// then inflate the numbers less.
    func bestTime(_ body: () -> Void) -> Double {
        let cpuTime = RuntimeThreads.count == 1
        func now() -> Double {
            if cpuTime {
                var ts = timespec()
                clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
                return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
            }
            return Double(DispatchTime.now().uptimeNanoseconds) * 1e-9
        }
        body()
        let t0 = now()
        body()
        let once = max(1e-7, now() - t0)
        let reps = max(1, Int(0.1 / once))
        var best = Double.infinity
        for _ in 0..<7 {
            let s = now()
            for _ in 0..<reps { body() }
            best = min(best, (now() - s) / Double(reps))
        }
        return best
    }

    /// KERNEL_BENCH_ONLY=text runs only the cases whose name contains it.
    let only = ProcessInfo.processInfo.environment["KERNEL_BENCH_ONLY"]
    func wanted(_ name: String) -> Bool { only.map { name.contains($0) } ?? true }

    func report(_ name: String, flops: Double, bytes: Double, _ t: Double) {
        print(String(format: "BENCH %-46@ %8.3f ms  %7.1f GFLOP/s  %6.1f GB/s", name as NSString,
                     t * 1e3, flops / t * 1e-9, bytes / t * 1e-9))
    }

    func testThroughput() throws {
        let env = ProcessInfo.processInfo.environment
        try XCTSkipUnless(env["KERNEL_BENCH"] != nil, "set KERNEL_BENCH=1 to run")
        if let t = env["KERNEL_BENCH_THREADS"].flatMap(Int.init) { RuntimeThreads.set(t) }
        print("BENCH threads \(RuntimeThreads.count)")
        var rng = SeededRandom(42)
        let bnScale = rng.floats(2048, 0.5, 1.5), bnShift = rng.floats(2048)

        // Depthwise at EfficientNetB0 (228x228 input) sizes, BN + swish fused.
        let dw: [(String, Int, Int, Int, Int, Int, ConvPadding, ActivationSpec)] = [  // name, batch, hw, C, k, stride
            ("dw3x3 s1 114x114x96 linear", 1, 114, 96, 3, 1, .same, .linear),
            ("dw5x5 s1 29x29x240 linear", 1, 29, 240, 5, 1, .same, .linear),
            ("dw3x3 s1 114x114x32 (block1a)", 1, 114, 32, 3, 1, .same, .swish),
            ("dw3x3 s1 114x114x96", 1, 114, 96, 3, 1, .same, .swish),
            ("dw3x3 s2 115x115x96 valid (block2a)", 1, 115, 96, 3, 2, .valid, .swish),
            ("dw3x3 s1 57x57x144 (block2b)", 1, 57, 144, 3, 1, .same, .swish),
            ("dw5x5 s2 61x61x144 valid (block3a)", 1, 61, 144, 5, 2, .valid, .swish),
            ("dw5x5 s1 29x29x240 (block3b)", 1, 29, 240, 5, 1, .same, .swish),
            ("dw3x3 s1 15x15x480 (block4)", 1, 15, 480, 3, 1, .same, .swish),
            ("dw5x5 s1 15x15x672 (block5)", 1, 15, 672, 5, 1, .same, .swish),
            ("dw5x5 s1 8x8x1152 (block6)", 1, 8, 1152, 5, 1, .same, .swish),
            ("dw3x3 s1 114x114x32 batch 8", 8, 114, 32, 3, 1, .same, .swish),
            ("dw3x3 s1 57x57x144 batch 8", 8, 57, 144, 3, 1, .same, .swish),
            ("dw5x5 s1 29x29x240 batch 8", 8, 29, 240, 5, 1, .same, .swish),
        ]
        for (name, n, hw, c, k, s, p, act) in dw where wanted(name) {
            let g = Conv2DGeometry(batch: n, inH: hw, inW: hw, inC: c, outC: c, kernelH: k, kernelW: k,
                                   strideH: s, strideW: s, padding: p)
            let x = rng.floats(g.inputCount), w = rng.floats(k * k * c)
            var y = [Float](repeating: 0, count: g.outputCount)
            let t = x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in bnScale.withUnsafeBufferPointer { sp in bnShift.withUnsafeBufferPointer { bp in
                    bestTime {
                        depthwiseConv2d(input: xp.baseAddress!, geometry: g, multiplier: 1, kernel: wp.baseAddress!,
                                        output: yp.baseAddress!,
                                        epilogue: Epilogue(scale: sp.baseAddress, shift: bp.baseAddress, activation: act))
                    }
                }}}}}
            report(name, flops: 2.0 * Double(g.outputCount * k * k), bytes: 4.0 * Double(g.inputCount + g.outputCount), t)
        }

        // Pointwise (1x1) and the stem conv, BN + swish (or linear for projections) fused.
        let pw: [(String, Int, Int, Int, Int, Int, Int, ActivationSpec)] = [ // name, batch, hw, inC, outC, k, stride
            ("stem conv3x3 s2 228x228x3->32", 1, 228, 3, 32, 3, 2, .swish),
            ("1x1 114x114 32->16 (block1a project)", 1, 114, 32, 16, 1, 1, .linear),
            ("1x1 114x114 16->96 (block2a expand)", 1, 114, 16, 96, 1, 1, .swish),
            ("1x1 57x57 144->24 (project)", 1, 57, 144, 24, 1, 1, .linear),
            ("1x1 57x57 24->144 (expand)", 1, 57, 24, 144, 1, 1, .swish),
            ("1x1 29x29 240->40", 1, 29, 240, 40, 1, 1, .linear),
            ("1x1 29x29 40->240", 1, 29, 40, 240, 1, 1, .swish),
            ("1x1 15x15 480->80", 1, 15, 480, 80, 1, 1, .linear),
            ("1x1 15x15 112->672", 1, 15, 112, 672, 1, 1, .swish),
            ("1x1 8x8 1152->192", 1, 8, 1152, 192, 1, 1, .linear),
            ("1x1 8x8 320->1280 (top)", 1, 8, 320, 1280, 1, 1, .swish),
            ("1x1 57x57 24->144 batch 8", 8, 57, 24, 144, 1, 1, .swish),
            ("1x1 29x29 240->40 batch 8", 8, 29, 240, 40, 1, 1, .linear),
            ("1x1 8x8 1152->192 batch 8", 8, 8, 1152, 192, 1, 1, .linear),
        ]
        for (name, n, hw, ci, co, k, s, act) in pw where wanted(name) {
            let g = Conv2DGeometry(batch: n, inH: hw, inW: hw, inC: ci, outC: co, kernelH: k, kernelW: k,
                                   strideH: s, strideW: s, padding: .same)
            let x = rng.floats(g.inputCount), w = rng.floats(k * k * ci * co)
            var y = [Float](repeating: 0, count: g.outputCount)
            var ws = [Float](repeating: 0, count: conv2dWorkspaceCount(g))
            let t = x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in ws.withUnsafeMutableBufferPointer { wsp in
                bnScale.withUnsafeBufferPointer { sp in bnShift.withUnsafeBufferPointer { bp in
                    bestTime {
                        conv2d(input: xp.baseAddress!, geometry: g, kernel: wp.baseAddress!, output: yp.baseAddress!,
                               epilogue: Epilogue(scale: sp.baseAddress, shift: bp.baseAddress, activation: act),
                               workspace: wsp.baseAddress, workspaceCount: wsp.count)
                    }
                }}}}}}
            report(name, flops: 2.0 * Double(g.outputCount * k * k * ci),
                   bytes: 4.0 * Double(g.inputCount + g.outputCount), t)
            // The same product through OpenBLAS and a separate epilogue pass (what conv2d does
            // without workspace for the packed weights), for comparison.
            guard g.isPointwise else { continue }
            let blas = x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in
                y.withUnsafeMutableBufferPointer { yp in
                bnScale.withUnsafeBufferPointer { sp in bnShift.withUnsafeBufferPointer { bp in
                    bestTime {
                        conv2d(input: xp.baseAddress!, geometry: g, kernel: wp.baseAddress!, output: yp.baseAddress!,
                               epilogue: Epilogue(scale: sp.baseAddress, shift: bp.baseAddress, activation: act),
                               workspace: nil, workspaceCount: 0)
                    }
                }}}}}
            report(name + " [OpenBLAS]", flops: 2.0 * Double(g.outputCount * ci),
                   bytes: 4.0 * Double(g.inputCount + g.outputCount), blas)
        }

        // What a parallel region costs: a few tens of us of work per worker (KERNEL_BENCH_SPIN
        // iterations, default 20000) run split, against one worker's share run alone.
        if wanted("parallelFor") {
            let spinCount = env["KERNEL_BENCH_SPIN"].flatMap(Int.init) ?? 20_000
            let workers = RuntimeThreads.count
            var sink = [Float](repeating: 1, count: 4096 * workers)
            let perChunk = sink.count / workers
            func spin(_ p: UnsafeMutablePointer<Float>) {        // dependent arithmetic, no memory traffic
                var v = load(p)
                for _ in 0..<spinCount { v = madd(v, Vec(repeating: 0.999), Vec(repeating: 0.001)) }
                store(v, p)
            }
            let t = sink.withUnsafeMutableBufferPointer { b in
                bestTime { parallelFor(workers, minChunk: 1) { _, r in for i in r { spin(b.baseAddress! + i * perChunk) } } }
            }
            let one = sink.withUnsafeMutableBufferPointer { b in bestTime { spin(b.baseAddress!) } }
            print(String(format: "BENCH parallelFor, %d workers x %.1f us of work: %.1f us (overhead %.1f us)",
                         workers, one * 1e6, t * 1e6, (t - one) * 1e6))
        }

        // Activation alone, in place over an EfficientNet-sized feature map.
        for (name, spec) in [("swish in place 114x114x96", ActivationSpec.swish), ("sigmoid in place 114x114x96", .sigmoid),
                             ("relu in place 114x114x96", .relu), ("gelu in place 114x114x96", ActivationSpec(.gelu))]
                where wanted(name) {
            var x = rng.floats(114 * 114 * 96, -4, 4)
            let t = x.withUnsafeMutableBufferPointer { xp in bestTime { applyActivation(spec, xp.baseAddress!, count: xp.count) } }
            report(name, flops: Double(x.count), bytes: 8.0 * Double(x.count), t)   // "flops" = elements here
        }
    }
}

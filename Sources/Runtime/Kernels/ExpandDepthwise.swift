// A 1x1 expansion feeding a depthwise convolution, fused (PlanOp.expandDepthwise, AVX-512 only):
//   input  [batch, inH, inW, inChannels]
//   expanded = expandEpilogue(input · expandKernel)      [batch, inH, inW, C], never stored whole
//   output = epilogue(depthwise(expanded, kernel))       [batch, outH, outW, C], multiplier 1
// Output rows are shared among the workers in bands; each worker keeps a ring of kernelH + 1
// expanded rows (its slot of the workspace), filled by the pointwise tile just before the
// depthwise row that reads them (CKernels/depthwise_avx512.c).
import CKernels
import Graph

/// Workspace floats the fused step needs: a ring per worker, for up to 8 workers.
public func expandDepthwiseWorkspaceCount(kernelH: Int, inW: Int, channels: Int) -> Int {
    min(RuntimeThreads.count, 8) * fusedRingCount(kernelH: kernelH, inW: inW, channels: channels)
}

/// Floats of one worker's ring in a fused ring step: kernelH + 1 input rows, so that two output
/// rows of stride 1 find all their input rows in it at once (CKernels/depthwise_avx512.c, ring_rows).
func fusedRingCount(kernelH: Int, inW: Int, channels: Int) -> Int { (kernelH + 1) * inW * channels }

/// Runs the fused pair (see the file comment). `expandPacked` is the [inChannels, C] kernel
/// packed by `packPointwise`; `g` is the depthwise geometry (inC = outC = C, dilationH 1); both
/// epilogues must have activations the AVX-512 kernels apply (`Epilogue.avx512`) and no residual.
/// `channelSums`: as for `depthwiseConv2d`. `expandPackedBF16`: the same kernel packed by
/// `packPointwiseBF16`, to expand in bfloat16 instead (AVX512_BF16; the depthwise part stays float32).
public func expandDepthwiseConv(input: UnsafePointer<Float>, inChannels: Int, expandPacked: UnsafePointer<Float>,
                                expandPackedBF16: UnsafePointer<UInt32>? = nil,
                                expandEpilogue: Epilogue, geometry g: Conv2DGeometry, kernel: UnsafePointer<Float>,
                                epilogue: Epilogue, output: UnsafeMutablePointer<Float>,
                                workspace: UnsafeMutablePointer<Float>, workspaceCount: Int,
                                channelSums: UnsafeMutablePointer<Float>? = nil) {
    precondition(KernelISA.avx512 && g.inC == g.outC && g.dilationH == 1, "expandDepthwiseConv: unsupported step")
    precondition(expandPackedBF16 == nil || KernelISA.bf16Available, "expandDepthwiseConv: bf16 needs AVX512_BF16")
    guard g.outputPixels > 0 else { return }
    let (ring, expand, depthwise) = fusedRingStep("expandDepthwiseConv", g, producer: expandEpilogue,
                                                  depthwise: epilogue, output: output,
                                                  workspaceCount: workspaceCount, channelSums: channelSums)
    let fused = ck_expand_depthwise(
        depthwise: g.depthwiseForC, inChannels: inChannels, expandPacked: expandPacked,
        expandPackedBF16: expandPackedBF16, expand: expand, depthwiseKernel: kernel,
        depthwiseEpilogue: depthwise)
    ringBands(g, ring: ring, workspace: workspace, workspaceCount: workspaceCount) { ringSlot, row0, row1 in
        var f = fused
        ck_expand_depthwise_avx512(&f, input, output, ringSlot, row0, row1)
    }
}

/// What both fused ring steps (`expandDepthwiseConv`, `convDepthwiseConv`) check and convert before
/// they run: one worker's ring of `g`'s input rows (floats), which `workspaceCount` must hold, and
/// the producer's and the depthwise part's epilogues in the AVX-512 kernels' form (activations they
/// apply, no residual), the depthwise one with the channel sums. `name` is the caller's, for the
/// precondition messages.
func fusedRingStep(_ name: String, _ g: Conv2DGeometry, producer: Epilogue, depthwise: Epilogue,
                   output: UnsafeMutablePointer<Float>, workspaceCount: Int,
                   channelSums: UnsafeMutablePointer<Float>?) -> (ring: Int, producer: ck_epilogue, depthwise: ck_epilogue) {
    let ring = fusedRingCount(kernelH: g.kernelH, inW: g.inW, channels: g.inC)
    precondition(workspaceCount >= ring, "\(name): workspace too small")
    guard let p = producer.avx512(output: output), var d = depthwise.avx512(output: output),
          producer.residual == nil, depthwise.residual == nil else {
        preconditionFailure("\(name): epilogue the AVX-512 kernels do not apply")
    }
    d.channel_sums = channelSums
    return (ring, p, d)
}

/// Shares a fused ring step's output rows (batch x outH of `g`) among the workers in bands of about
/// two per worker; `body(ring, row0, row1)` runs a band with the worker's own ring of `ring` floats
/// in `workspace`. Each band restarts its ring, and so computes the kernelH - stride input rows it
/// shares with the band above once more.
func ringBands(_ g: Conv2DGeometry, ring: Int, workspace: UnsafeMutablePointer<Float>, workspaceCount: Int,
               _ body: (UnsafeMutablePointer<Float>, Int, Int) -> Void) {
    let workers = max(1, min(RuntimeThreads.count, workspaceCount / ring))
    parallelFor(g.batch * g.outH, minChunk: max(1, g.outH / (2 * workers)), threads: workers) { w, range in
        body(workspace + w * ring, range.lowerBound, range.upperBound)
    }
}

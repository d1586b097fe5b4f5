// An image stem (a convolution over few input channels, computed directly) feeding a depthwise
// convolution, fused (PlanOp.convDepthwise, AVX-512 only):
//   input  [batch, inH, inW, inC]                               inC <= 4 (`conv2dIsDirect`)
//   stem   = convEpilogue(conv(input, convKernel))              [batch, H, W, C], never stored whole
//   output = epilogue(depthwise(stem, kernel))                  [batch, outH, outW, C], multiplier 1
// EfficientNet's stem map is 114x114x32 per image (1.7 MB): stored whole, the stem writes it past
// L2 and block1a's depthwise reads it back from L3. Here each worker computes just the stem rows
// the next depthwise row needs into a ring of kernelH + 1 rows (its slot of the workspace), as
// `expandDepthwiseConv` does for a 1x1 expansion (CKernels/depthwise_avx512.c). Every value is the
// same sum in the same order as the two kernels run one after the other.
import CKernels
import Graph

/// Runs the fused pair (see the file comment). `cg` is the stem's geometry (direct, dilationW 1),
/// `g` the depthwise's (inH, inW, inC = cg's outH, outW, outC; outC = inC; dilationH 1); both
/// epilogues must have activations the AVX-512 kernels apply (`Epilogue.avx512`) and no residual.
/// `workspace`: `expandDepthwiseWorkspaceCount(kernelH: g.kernelH, inW: g.inW, channels: g.inC)`
/// floats (a ring per worker). `channelSums`: as for `depthwiseConv2d`.
public func convDepthwiseConv(input: UnsafePointer<Float>, convGeometry cg: Conv2DGeometry,
                              convKernel: UnsafePointer<Float>, convEpilogue: Epilogue, geometry g: Conv2DGeometry,
                              kernel: UnsafePointer<Float>, epilogue: Epilogue, output: UnsafeMutablePointer<Float>,
                              workspace: UnsafeMutablePointer<Float>, workspaceCount: Int,
                              channelSums: UnsafeMutablePointer<Float>? = nil) {
    precondition(KernelISA.avx512 && conv2dIsDirect(cg) && cg.dilationW == 1 && g.dilationH == 1
                 && g.inC == g.outC && g.inC == cg.outC && g.inH == cg.outH && g.inW == cg.outW && g.batch == cg.batch,
                 "convDepthwiseConv: unsupported step")
    guard g.outputPixels > 0 else { return }
    let (ring, stem, depthwise) = fusedRingStep("convDepthwiseConv", g, producer: convEpilogue, depthwise: epilogue,
                                                output: output, workspaceCount: workspaceCount,
                                                channelSums: channelSums)
    let fused = ck_conv_depthwise(
        conv: cg.convForC, convKernel: convKernel, convEpilogue: stem, depthwise: g.depthwiseForC, depthwiseKernel: kernel,
        depthwiseEpilogue: depthwise)
    ringBands(g, ring: ring, workspace: workspace, workspaceCount: workspaceCount) { ringSlot, row0, row1 in
        var f = fused
        ck_conv_depthwise_avx512(&f, input, output, ringSlot, row0, row1)
    }
}

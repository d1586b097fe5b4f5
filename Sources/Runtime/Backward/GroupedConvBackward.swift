// Grouped Conv2D (1 < groups < input channels, as RegNet writes it) over NHWC, forward and
// backward:
//   input  x  [batch, inH, inW, inC]; group g reads channels g * ipg ..< (g + 1) * ipg, ipg = inC / groups
//   kernel W  HWIO [kernelH, kernelW, ipg, outC]; output channel f belongs to group f / opg, opg = outC / groups
//   output y  [batch, outH, outW, outC]
// Each group is an ordinary convolution from ipg to opg channels. Its input channels, output
// channels and kernel columns are gathered into contiguous buffers in the workspace and the
// groups = 1 kernels (forward, dKernel, dInput) run on them, then the results are scattered
// back. This does the grouped convolution's own multiply-adds; a block-diagonal dense kernel
// (zeros outside the groups) would cost `groups` times as many, which for RegNetY002's 8
// channels per group would be 3 to 46 times the work of every such layer. The inference plan
// runs the forward the same way (a `.conv` whose ConvParams.groups > 1).
import Graph

/// The per-group convolution of a grouped geometry `g` (the whole layer: inC and outC of all groups).
func groupedConvGroupGeometry(_ g: Conv2DGeometry, groups: Int) -> Conv2DGeometry {
    precondition(groups > 0 && g.inC % groups == 0 && g.outC % groups == 0, "grouped convolution channels")
    return Conv2DGeometry(batch: g.batch, inH: g.inH, inW: g.inW, inC: g.inC / groups, outH: g.outH, outW: g.outW,
                          outC: g.outC / groups, kernelH: g.kernelH, kernelW: g.kernelW, strideH: g.strideH,
                          strideW: g.strideW, dilationH: g.dilationH, dilationW: g.dilationW, padTop: g.padTop,
                          padLeft: g.padLeft)
}

/// Where each buffer of a grouped convolution lives in its workspace.
private struct GroupedConvWorkspace {
    let input: UnsafeMutablePointer<Float>      // one group's input (or dInput) channels
    let output: UnsafeMutablePointer<Float>     // one group's output (or dOutput) channels
    let kernel: UnsafeMutablePointer<Float>     // one group's kernel (or dKernel) columns
    let inner: UnsafeMutablePointer<Float>      // the groups = 1 kernels' own workspace
    let innerCount: Int

    static func sizes(_ s: Conv2DGeometry) -> (input: Int, output: Int, kernel: Int) {
        (s.inputCount, s.outputCount, s.kernelH * s.kernelW * s.inC * s.outC)
    }

    init(_ s: Conv2DGeometry, _ ws: UnsafeMutablePointer<Float>, _ count: Int) {
        let n = GroupedConvWorkspace.sizes(s)
        let fixed = n.input + n.output + n.kernel
        precondition(count >= fixed, "grouped convolution workspace too small: \(count) < \(fixed)")
        input = ws
        output = ws + n.input
        kernel = ws + n.input + n.output
        inner = ws + fixed
        innerCount = count - fixed
    }
}

/// Floats of workspace the grouped forward and backward functions need (any of them).
func groupedConv2dWorkspaceCount(_ g: Conv2DGeometry, groups: Int, threads: Int = RuntimeThreads.count) -> Int {
    let s = groupedConvGroupGeometry(g, groups: groups)
    let n = GroupedConvWorkspace.sizes(s)
    return n.input + n.output + n.kernel
        + max(conv2dWorkspaceCount(s, threads: threads), conv2dBackwardWorkspaceCount(s, threads: threads), 1)
}

/// Copies `width` channels starting at `offset` of each of `rows` rows of `channels` floats into
/// consecutive rows of `width` floats.
private func gatherChannels(_ src: UnsafePointer<Float>, rows: Int, channels: Int, offset: Int, width: Int,
                            into dst: UnsafeMutablePointer<Float>) {
    parallelFor(rows, minChunk: 4096) { _, r in
        for row in r { (dst + row * width).update(from: src + row * channels + offset, count: width) }
    }
}

/// The inverse of `gatherChannels`: writes (or, with `accumulate`, adds) rows of `width` floats
/// into channels offset ..< offset + width of rows of `channels` floats.
private func scatterChannels(_ src: UnsafePointer<Float>, rows: Int, width: Int, into dst: UnsafeMutablePointer<Float>,
                             channels: Int, offset: Int, accumulate: Bool) {
    parallelFor(rows, minChunk: 4096) { _, r in
        for row in r {
            let to = dst + row * channels + offset, from = src + row * width
            if accumulate { addInto(to, from, width) } else { to.update(from: from, count: width) }
        }
    }
}

/// y = activation(conv(x, W) + bias), group by group (training and the inference plan alike).
/// `bias` (outC values) may be nil; the activation is element-wise.
func groupedConv2d(input: UnsafePointer<Float>, geometry g: Conv2DGeometry, groups: Int, kernel: UnsafePointer<Float>,
                   bias: UnsafePointer<Float>?, activation: ActivationSpec = .linear, output: UnsafeMutablePointer<Float>,
                   workspace: UnsafeMutablePointer<Float>, workspaceCount: Int) {
    let s = groupedConvGroupGeometry(g, groups: groups)
    let w = GroupedConvWorkspace(s, workspace, workspaceCount)
    let taps = g.kernelH * g.kernelW
    for group in 0..<groups {
        gatherChannels(input, rows: g.batch * g.inH * g.inW, channels: g.inC, offset: group * s.inC, width: s.inC,
                       into: w.input)
        gatherChannels(kernel, rows: taps * s.inC, channels: g.outC, offset: group * s.outC, width: s.outC, into: w.kernel)
        conv2d(input: w.input, geometry: s, kernel: w.kernel, output: w.output,
               epilogue: Epilogue(shift: bias.map { $0 + group * s.outC }, activation: activation),
               workspace: w.inner, workspaceCount: w.innerCount)
        scatterChannels(w.output, rows: s.outputPixels, width: s.outC, into: output, channels: g.outC,
                        offset: group * s.outC, accumulate: false)
    }
}

/// dKernel (HWIO, I = inC / groups) from the forward input and dOutput. Overwrites dKernel, or adds
/// into it when `accumulate`. (dBias is `biasBackward` over all outC channels, as for groups = 1.)
func groupedConv2dBackwardKernel(input: UnsafePointer<Float>, dOutput: UnsafePointer<Float>, geometry g: Conv2DGeometry,
                                 groups: Int, dKernel: UnsafeMutablePointer<Float>, accumulate: Bool,
                                 workspace: UnsafeMutablePointer<Float>, workspaceCount: Int) {
    let s = groupedConvGroupGeometry(g, groups: groups)
    let w = GroupedConvWorkspace(s, workspace, workspaceCount)
    let taps = g.kernelH * g.kernelW
    for group in 0..<groups {
        gatherChannels(input, rows: g.batch * g.inH * g.inW, channels: g.inC, offset: group * s.inC, width: s.inC,
                       into: w.input)
        gatherChannels(dOutput, rows: s.outputPixels, channels: g.outC, offset: group * s.outC, width: s.outC,
                       into: w.output)
        conv2dBackwardKernel(input: w.input, dOutput: w.output, geometry: s, dKernel: w.kernel, accumulate: false,
                             workspace: w.inner, workspaceCount: w.innerCount)
        scatterChannels(w.kernel, rows: taps * s.inC, width: s.outC, into: dKernel, channels: g.outC,
                        offset: group * s.outC, accumulate: accumulate)
    }
}

/// dInput from dOutput. Overwrites dInput, or adds into it when `accumulate` (each input channel
/// belongs to one group, so each is written or added once).
func groupedConv2dBackwardInput(dOutput: UnsafePointer<Float>, geometry g: Conv2DGeometry, groups: Int,
                                kernel: UnsafePointer<Float>, dInput: UnsafeMutablePointer<Float>, accumulate: Bool,
                                workspace: UnsafeMutablePointer<Float>, workspaceCount: Int) {
    let s = groupedConvGroupGeometry(g, groups: groups)
    let w = GroupedConvWorkspace(s, workspace, workspaceCount)
    let taps = g.kernelH * g.kernelW
    for group in 0..<groups {
        gatherChannels(dOutput, rows: s.outputPixels, channels: g.outC, offset: group * s.outC, width: s.outC,
                       into: w.output)
        gatherChannels(kernel, rows: taps * s.inC, channels: g.outC, offset: group * s.outC, width: s.outC, into: w.kernel)
        conv2dBackwardInput(dOutput: w.output, geometry: s, kernel: w.kernel, dInput: w.input, accumulate: false,
                            workspace: w.inner, workspaceCount: w.innerCount)
        scatterChannels(w.input, rows: g.batch * g.inH * g.inW, width: s.inC, into: dInput, channels: g.inC,
                        offset: group * s.inC, accumulate: accumulate)
    }
}

// Geometry of a 2-D convolution or pooling window over NHWC tensors:
//   input  [batch, inH, inW, inC], output [batch, outH, outW, outC]
//   output (oy, ox) reads input rows oy*strideH - padTop + ky*dilationH (ky < kernelH), and the
//   same for columns; positions outside the input are zeros (conv) or skipped (pooling).
// For DepthwiseConv2D outC = inC * depth_multiplier; for pooling outC = inC.

/// Keras's `padding` argument.
public enum ConvPadding: String, Sendable {
    case same, valid
}

public struct Conv2DGeometry: Equatable, Sendable {
    public var batch: Int
    public var inH: Int, inW: Int, inC: Int
    public var outH: Int, outW: Int, outC: Int
    public var kernelH: Int, kernelW: Int
    public var strideH: Int, strideW: Int
    public var dilationH: Int, dilationW: Int
    /// Padding before the first row/column; the bottom/right padding is whatever is left over.
    public var padTop: Int, padLeft: Int

    /// Every field given explicitly (e.g. for an explicit ZeroPadding2D folded into a conv).
    public init(batch: Int, inH: Int, inW: Int, inC: Int, outH: Int, outW: Int, outC: Int,
                kernelH: Int, kernelW: Int, strideH: Int, strideW: Int,
                dilationH: Int, dilationW: Int, padTop: Int, padLeft: Int) {
        precondition(batch >= 0 && inH > 0 && inW > 0 && inC > 0 && outC > 0 && kernelH > 0 && kernelW > 0
                     && strideH > 0 && strideW > 0 && dilationH > 0 && dilationW > 0 && padTop >= 0 && padLeft >= 0,
                     "invalid convolution geometry")
        (self.batch, self.inH, self.inW, self.inC, self.outH, self.outW, self.outC) =
            (batch, inH, inW, inC, outH, outW, outC)
        (self.kernelH, self.kernelW, self.strideH, self.strideW) = (kernelH, kernelW, strideH, strideW)
        (self.dilationH, self.dilationW, self.padTop, self.padLeft) = (dilationH, dilationW, padTop, padLeft)
    }

    /// Keras/TensorFlow's rule. same: out = ceil(in / stride), total padding
    /// max(0, (out - 1) * stride + (k - 1) * dilation + 1 - in), floor(total / 2) before and the
    /// rest after (so stride 2 puts the extra row at the bottom). valid: no padding,
    /// out = floor((in - (k - 1) * dilation - 1) / stride) + 1 (at least 0).
    public init(batch: Int, inH: Int, inW: Int, inC: Int, outC: Int, kernelH: Int, kernelW: Int,
                strideH: Int = 1, strideW: Int = 1, dilationH: Int = 1, dilationW: Int = 1,
                padding: ConvPadding) {
        func axis(_ size: Int, _ k: Int, _ s: Int, _ d: Int) -> (out: Int, before: Int) {
            let span = (k - 1) * d + 1
            switch padding {
            case .valid:
                return (size >= span ? (size - span) / s + 1 : 0, 0)
            case .same:
                let out = (size + s - 1) / s
                let total = max(0, (out - 1) * s + span - size)
                return (out, total / 2)
            }
        }
        let h = axis(inH, kernelH, strideH, dilationH), w = axis(inW, kernelW, strideW, dilationW)
        self.init(batch: batch, inH: inH, inW: inW, inC: inC, outH: h.out, outW: w.out, outC: outC,
                  kernelH: kernelH, kernelW: kernelW, strideH: strideH, strideW: strideW,
                  dilationH: dilationH, dilationW: dilationW, padTop: h.before, padLeft: w.before)
    }

    /// Rows of padding after the input that the last output row reaches into.
    public var padBottom: Int { max(0, (outH - 1) * strideH + (kernelH - 1) * dilationH + 1 - inH - padTop) }
    public var padRight: Int { max(0, (outW - 1) * strideW + (kernelW - 1) * dilationW + 1 - inW - padLeft) }

    public var inputCount: Int { batch * inH * inW * inC }
    public var outputCount: Int { batch * outH * outW * outC }
    /// Output pixels: the row count of the im2col matrix.
    public var outputPixels: Int { batch * outH * outW }

    /// True when the convolution is a plain matrix product over pixels (1x1, stride 1, no padding).
    public var isPointwise: Bool {
        kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 && padTop == 0 && padLeft == 0
            && outH == inH && outW == inW
    }

    /// The range of kernel taps k (0..<kernel) whose input index o*stride - pad + k*dilation
    /// falls inside 0..<size: the taps that read real input for output index o.
    @inline(__always)
    static func validTaps(_ o: Int, stride: Int, pad: Int, dilation: Int, kernel: Int, size: Int) -> Range<Int> {
        let start = o * stride - pad                       // input index of tap 0
        let lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation
        let hi = size - start > 0 ? min(kernel, (size - start + dilation - 1) / dilation) : 0
        return lo..<max(lo, hi)
    }
}

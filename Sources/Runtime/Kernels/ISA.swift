// Which instruction set the hottest kernels use. The Swift kernels are compiled for AVX2 + FMA
// (Package.swift); on a CPU that also has AVX-512 (and an OS that saves its registers), the
// pointwise product, depthwise and direct (stem) convolutions and the 1x1/depthwise weight
// gradients run the 16-lane C versions in CKernels instead, and plans use the fused steps that
// exist only there. Both paths compute the same epilogues; the tests run both.
import CKernels
import Foundation
import Graph

public enum KernelISA {
    /// True when the AVX-512 kernels run: the CPU and OS support them and the environment does
    /// not set DISTILLCTL_NO_AVX512 (to time or test the AVX2 path on an AVX-512 machine).
    nonisolated(unsafe) public static var avx512: Bool = available

    /// Whether this machine could run the AVX-512 kernels at all.
    public static let available: Bool =
        ck_avx512_usable() != 0 && ProcessInfo.processInfo.environment["DISTILLCTL_NO_AVX512"] == nil

    /// Whether bfloat16 products (`Precision.bfloat16`) can run: the AVX-512 kernels are available
    /// and the CPU has AVX512_BF16, and the environment sets neither DISTILLCTL_NO_AVX512 nor
    /// DISTILLCTL_NO_BF16 (to test the refusal on a machine that has it).
    public static let bf16Available: Bool =
        available && ck_avx512_bf16_usable() != 0 && ProcessInfo.processInfo.environment["DISTILLCTL_NO_BF16"] == nil

    /// Runs `body` with the AVX-512 kernels switched to `on` (tests compare the two paths).
    public static func with<T>(avx512 on: Bool, _ body: () throws -> T) rethrows -> T {
        let saved = avx512
        avx512 = on && available
        defer { avx512 = saved }
        return try body()
    }
}

extension ActivationSpec {
    /// The AVX-512 kernels' code for this activation (and relu's clip), or nil when they do not
    /// apply it in registers.
    var avx512Code: (kind: Int32, clip: Float)? {
        let plainRelu = (kind == .relu || kind == .relu6) && alpha == 0 && threshold == 0
        switch kind {
        case .linear: return (Int32(CK_ACT_LINEAR), 0)
        case .swish: return (Int32(CK_ACT_SWISH), 0)
        case .sigmoid: return (Int32(CK_ACT_SIGMOID), 0)
        case .hardSilu: return (Int32(CK_ACT_HARD_SILU), 0)
        case .hardSigmoid: return (Int32(CK_ACT_HARD_SIGMOID), alpha)
        case _ where plainRelu:
            if let m = kind == .relu6 ? (maxValue ?? 6) : maxValue { return (Int32(CK_ACT_RELU_CLIPPED), m) }
            return (Int32(CK_ACT_RELU), 0)
        default: return nil
        }
    }
}

extension Epilogue {
    /// The epilogue for the AVX-512 kernels, or nil when its activation is not one they apply in
    /// registers (then the caller runs it as a pass, as the AVX2 kernels do).
    func avx512(output: UnsafeMutablePointer<Float>) -> ck_epilogue? {
        guard let (kind, clip) = elementwise.avx512Code else { return nil }
        return ck_epilogue(scale: scale, shift: shift, residual: residual, output: output, activation: kind, clip: clip,
                           channel_sums: nil)
    }
}

extension Conv2DGeometry {
    /// The geometry as the C convolution kernels take it.
    var convForC: ck_conv_geometry {
        ck_conv_geometry(inH: inH, inW: inW, inC: inC, outH: outH, outW: outW, outC: outC, kernelH: kernelH,
                         kernelW: kernelW, strideH: strideH, strideW: strideW, dilationH: dilationH,
                         dilationW: dilationW, padTop: padTop, padLeft: padLeft)
    }

    /// The geometry as the C depthwise kernels take it (channels = inC).
    var depthwiseForC: ck_depthwise_geometry {
        ck_depthwise_geometry(inH: inH, inW: inW, channels: inC, outH: outH, outW: outW, kernelH: kernelH,
                              kernelW: kernelW, strideH: strideH, strideW: strideW, dilationH: dilationH,
                              dilationW: dilationW, padTop: padTop, padLeft: padLeft)
    }
}

/// An epilogue as the AVX-512 kernels take it: the part they apply in registers, and the
/// activation left for a pass over finished elements when it is not one of theirs (gelu, elu,
/// ...: rare in convolutions, so the kernels are not compiled for every activation there is).
struct SplitEpilogue {
    var inRegisters: ck_epilogue
    let after: Epilogue?

    init(_ e: Epilogue, output: UnsafeMutablePointer<Float>) {
        if let all = e.avx512(output: output) {
            inRegisters = all
            after = nil
        } else {
            inRegisters = Epilogue(scale: e.scale, shift: e.shift, residual: e.residual).avx512(output: output)!
            after = Epilogue(activation: e.elementwise)
        }
    }

    /// Runs the pass, if any, over a finished `rows` x `cols` block (rows `ld` apart) that
    /// starts at element `offset` of the output.
    func finish(_ output: UnsafeMutablePointer<Float>, offset: Int, rows: Int = 1, cols: Int, ld: Int? = nil) {
        after?.apply(output + offset, rows: rows, cols: cols, ld: ld ?? cols, outputOffset: offset)
    }
}

// The epilogue applied to eight channels held in registers, shared by the kernels that finish
// their accumulators themselves (direct and depthwise convolution, the packed pointwise product):
//     y = act(acc * scale[c] + shift[c] + residual[i])
// with i the element's index in the output (so the residual is addressed like the output).

/// `Epilogue`'s pointers resolved for register use. Absent parts point at a valid address (the
/// output) so the struct needs no optionals; the flags decide whether they are loaded.
struct EpilogueVector {
    let output: UnsafeMutablePointer<Float>
    let scale: UnsafePointer<Float>, hasScale: Bool
    let shift: UnsafePointer<Float>, hasShift: Bool
    let residual: UnsafePointer<Float>, hasResidual: Bool

    init(_ e: Epilogue, output: UnsafeMutablePointer<Float>) {
        self.output = output
        let anywhere = UnsafePointer(output)
        scale = e.scale ?? anywhere
        hasScale = e.scale != nil
        shift = e.shift ?? anywhere
        hasShift = e.shift != nil
        residual = e.residual ?? anywhere
        hasResidual = e.residual != nil
    }

    /// True when the affine part and the residual are absent.
    var isPlain: Bool { !hasScale && !hasShift && !hasResidual }

    /// Channels c..c+7 of the accumulators, epilogue applied, stored at `dst` (inside the output).
    @inline(__always)
    func emit<A: VectorActivation>(_ acc: Vec, channel c: Int, at dst: UnsafeMutablePointer<Float>, _ act: A) {
        var v = acc
        if hasScale { v *= load(scale + c) }
        if hasShift { v += load(shift + c) }
        if hasResidual { v += load(residual + (dst - output)) }
        store(act(v), dst)
    }

    /// The same for the first `n` (< 8) lanes; nothing past them is read or written.
    @inline(__always)
    func emitPartial<A: VectorActivation>(_ acc: Vec, channel c: Int, at dst: UnsafeMutablePointer<Float>,
                                          _ n: Int, _ act: A) {
        var v = acc
        if hasScale { v *= loadPartial(scale + c, n) }
        if hasShift { v += loadPartial(shift + c, n) }
        if hasResidual { v += loadPartial(residual + (dst - output), n) }
        storePartial(act(v), dst, n)
    }

    /// `emit` for n == 8, `emitPartial` below.
    @inline(__always)
    func emit<A: VectorActivation>(_ acc: Vec, channel c: Int, at dst: UnsafeMutablePointer<Float>,
                                   count n: Int, _ act: A) {
        if n >= 8 { emit(acc, channel: c, at: dst, act) } else { emitPartial(acc, channel: c, at: dst, n, act) }
    }
}

// The epilogue every conv/dense kernel applies once per output element after accumulating:
//     y = act(acc * scale[c] + shift[c])
// with c the output channel (last axis). `scale` is a folded BatchNormalization's multiplier,
// `shift` a bias and/or BN's offset; either may be absent. This is how BatchNormalization and the
// layer's activation fuse into the producing kernel instead of costing a pass each over memory.
import Graph

/// Per-channel affine transform plus activation applied to a kernel's accumulators.
/// The pointers are borrowed: they must stay valid for the kernel call (each has outC floats).
public struct Epilogue {
    public var scale: UnsafePointer<Float>?
    public var shift: UnsafePointer<Float>?
    /// Any kind; softmax is applied over the output channels (Keras's axis -1) after the rest.
    public var activation: ActivationSpec

    public init(scale: UnsafePointer<Float>? = nil, shift: UnsafePointer<Float>? = nil,
                activation: ActivationSpec = .linear) {
        self.scale = scale
        self.shift = shift
        self.activation = activation
    }

    /// No scale, no shift, linear activation.
    public static var none: Epilogue { Epilogue() }

    /// True when applying it would change nothing.
    public var isIdentity: Bool { scale == nil && shift == nil && activation.kind == .linear }

    /// The element-wise activation (softmax is handled separately, over whole rows).
    var elementwise: ActivationSpec { activation.kind == .softmax ? .linear : activation }

    /// The epilogue without its softmax: what runs per tile before softmax runs on whole rows.
    var withoutSoftmax: Epilogue { Epilogue(scale: scale, shift: shift, activation: elementwise) }
}

extension Epilogue {
    /// Applies the element-wise part in place to a `rows` x `cols` block at `c` whose rows are
    /// `ld` floats apart; column j is channel `channelOffset + j`.
    func apply(_ c: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, channelOffset: Int = 0) {
        if scale == nil && shift == nil && elementwise.kind == .linear { return }
        apply(from: c, ldFrom: ld, to: c, ldTo: ld, rows: rows, cols: cols, channelOffset: channelOffset)
    }

    /// Reads a `rows` x `cols` block at `src`, writes the result to `dst` (which may be `src`).
    func apply(from src: UnsafePointer<Float>, ldFrom: Int, to dst: UnsafeMutablePointer<Float>, ldTo: Int,
               rows: Int, cols: Int, channelOffset: Int = 0) {
        withActivation(elementwise, EpilogueTileJob(
            src: src, lds: ldFrom, dst: dst, ldd: ldTo, rows: rows, cols: cols,
            scale: scale.map { $0 + channelOffset }, shift: shift.map { $0 + channelOffset }))
    }
}

private struct EpilogueTileJob: ActivationConsumer {
    let src: UnsafePointer<Float>, lds: Int
    let dst: UnsafeMutablePointer<Float>, ldd: Int
    let rows: Int, cols: Int
    let scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?

    func run<A: VectorActivation>(_ act: A) {
        // One loop per affine variant so none of them tests an optional per element.
        switch (scale, shift) {
        case let (s?, b?): rowsLoop { p, j in madd(load(p + j), load(s + j), load(b + j)) }
                           tail: { p, j, n in madd(loadPartial(p + j, n), loadPartial(s + j, n), loadPartial(b + j, n)) }
        case let (s?, nil): rowsLoop { p, j in load(p + j) * load(s + j) }
                            tail: { p, j, n in loadPartial(p + j, n) * loadPartial(s + j, n) }
        case let (nil, b?): rowsLoop { p, j in load(p + j) + load(b + j) }
                            tail: { p, j, n in loadPartial(p + j, n) + loadPartial(b + j, n) }
        case (nil, nil): rowsLoop { p, j in load(p + j) } tail: { p, j, n in loadPartial(p + j, n) }
        }

        @inline(__always)
        func rowsLoop(_ affine: (UnsafePointer<Float>, Int) -> Vec,
                      tail: (UnsafePointer<Float>, Int, Int) -> Vec) {
            for r in 0..<rows {
                let p = src + r * lds, q = dst + r * ldd
                var j = 0
                while j + 8 <= cols {
                    store(act(affine(p, j)), q + j)
                    j += 8
                }
                if j < cols { storePartial(act(tail(p, j, cols - j)), q + j, cols - j) }
            }
        }
    }
}

// The epilogue every conv/dense kernel applies once per output element after accumulating:
//     y = act(acc * scale[c] + shift[c] + residual[i])
// with c the output channel (last axis) and i the element's index in the output. `scale` is a
// folded BatchNormalization's multiplier, `shift` a bias and/or BN's offset, `residual` a tensor
// shaped like the output (the other input of a following Add: EfficientNet's and ResNet's skip
// connections, where ResNet's relu comes after the add); any may be absent. This is how
// BatchNormalization, Add and the activation fuse into the producing kernel instead of costing a
// pass each over memory.
import Graph

/// Per-channel affine transform, optional residual and activation applied to a kernel's
/// accumulators. The pointers are borrowed: they must stay valid for the kernel call.
public struct Epilogue {
    /// outC floats, or nil for 1.
    public var scale: UnsafePointer<Float>?
    /// outC floats, or nil for 0.
    public var shift: UnsafePointer<Float>?
    /// As many floats as the output, laid out like it; either the output itself (y = act(acc + y):
    /// accumulating) or not overlapping it.
    public var residual: UnsafePointer<Float>?
    /// Any kind; softmax is applied over the output channels (Keras's axis -1) after the rest.
    public var activation: ActivationSpec

    public init(scale: UnsafePointer<Float>? = nil, shift: UnsafePointer<Float>? = nil,
                residual: UnsafePointer<Float>? = nil, activation: ActivationSpec = .linear) {
        self.scale = scale
        self.shift = shift
        self.residual = residual
        self.activation = activation
    }

    /// No scale, no shift, linear activation.
    public static var none: Epilogue { Epilogue() }

    /// True when applying it would change nothing.
    public var isIdentity: Bool { scale == nil && shift == nil && residual == nil && activation.kind == .linear }

    /// The element-wise activation (softmax is handled separately, over whole rows).
    var elementwise: ActivationSpec { activation.kind == .softmax ? .linear : activation }

    /// The epilogue without its softmax: what runs per tile before softmax runs on whole rows.
    var withoutSoftmax: Epilogue { Epilogue(scale: scale, shift: shift, residual: residual, activation: elementwise) }
}

extension Epilogue {
    /// Applies the element-wise part in place to a `rows` x `cols` block at `c` whose rows are
    /// `ld` floats apart; column j is channel `channelOffset + j`; the block's first element is
    /// element `outputOffset` of the output (where its residual is).
    func apply(_ c: UnsafeMutablePointer<Float>, rows: Int, cols: Int, ld: Int, channelOffset: Int = 0,
               outputOffset: Int) {
        if scale == nil && shift == nil && residual == nil && elementwise.kind == .linear { return }
        apply(from: c, ldFrom: ld, to: c, ldTo: ld, rows: rows, cols: cols, channelOffset: channelOffset,
              outputOffset: outputOffset)
    }

    /// Reads a `rows` x `cols` block at `src`, writes the result to `dst` (which may be `src`).
    func apply(from src: UnsafePointer<Float>, ldFrom: Int, to dst: UnsafeMutablePointer<Float>, ldTo: Int,
               rows: Int, cols: Int, channelOffset: Int = 0, outputOffset: Int) {
        withActivation(elementwise, EpilogueTileJob(
            src: src, lds: ldFrom, dst: dst, ldd: ldTo, rows: rows, cols: cols,
            scale: scale.map { $0 + channelOffset }, shift: shift.map { $0 + channelOffset },
            residual: residual.map { $0 + outputOffset }))
    }
}

private struct EpilogueTileJob: ActivationConsumer {
    let src: UnsafePointer<Float>, lds: Int
    let dst: UnsafeMutablePointer<Float>, ldd: Int
    let rows: Int, cols: Int
    let scale: UnsafePointer<Float>?, shift: UnsafePointer<Float>?
    /// At the block's first element, rows `ldd` apart like the destination.
    let residual: UnsafePointer<Float>?

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
                if let res = residual.map({ $0 + r * ldd }) {
                    while j + 8 <= cols {
                        store(act(affine(p, j) + load(res + j)), q + j)
                        j += 8
                    }
                    if j < cols {
                        storePartial(act(tail(p, j, cols - j) + loadPartial(res + j, cols - j)), q + j, cols - j)
                    }
                    continue
                }
                while j + 8 <= cols {
                    store(act(affine(p, j)), q + j)
                    j += 8
                }
                if j < cols { storePartial(act(tail(p, j, cols - j)), q + j, cols - j) }
            }
        }
    }
}

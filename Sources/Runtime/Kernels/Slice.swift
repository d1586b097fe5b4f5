import Graph
// `x[...]` (tf-keras's SlicingOpLambda, Keras 3's GetItem) over a concrete shape: a strided
// window, copied out forward and scattered back (added) backward. An index is a window of one
// position whose axis the output shape drops; the data are laid out as if it were kept.

/// The window of a subscript over an input of `shape` (batch included): first position, step
/// and count per axis, batch taken whole.
struct SliceWindow: Equatable {
    var begin: [Int]
    var step: [Int]
    var counts: [Int]
}

/// Resolves `axes` against a concrete input shape; also gives the output shape (index axes
/// dropped). Refuses an index outside its axis and an empty result.
func sliceWindow(_ axes: [SliceAxis], _ shape: [Int], fail: (String) -> RuntimeError) throws
    -> (window: SliceWindow, shape: [Int]) {
    var w = SliceWindow(begin: [0], step: [1], counts: [shape[0]])
    var out = [shape[0]]
    for d in 1..<shape.count {
        let a = d - 1 < axes.count ? axes[d - 1] : .all
        guard let r = a.resolve(shape[d]) else { throw fail("index \(a.start ?? 0) is outside axis \(d) of size \(shape[d])") }
        guard r.count > 0 else { throw fail("the subscript leaves axis \(d) (size \(shape[d])) empty") }
        w.begin.append(r.begin); w.step.append(a.isIndex ? 1 : a.step); w.counts.append(r.count)
        if !a.isIndex { out.append(r.count) }
    }
    return (w, out)
}

/// Calls `body(inputOffset, outputOffset)` for each run of the innermost axis (counts.last
/// elements, input stride step.last, output contiguous).
private func forEachRun(_ shape: [Int], _ w: SliceWindow, _ body: (Int, Int) -> Void) {
    let rank = shape.count
    var strides = Array(repeating: 1, count: rank)
    for d in stride(from: rank - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
    let inner = w.counts[rank - 1]
    let runs = w.counts.dropLast().reduce(1, *)
    var index = Array(repeating: 0, count: rank)
    for run in 0..<runs {
        var offset = w.begin[rank - 1] * strides[rank - 1]
        for d in 0..<(rank - 1) { offset += (w.begin[d] + index[d] * w.step[d]) * strides[d] }
        body(offset, run * inner)
        var d = rank - 2
        while d >= 0 {
            index[d] += 1
            if index[d] < w.counts[d] { break }
            index[d] = 0
            d -= 1
        }
    }
}

func stridedSlice(_ x: UnsafePointer<Float>, shape: [Int], window w: SliceWindow, _ y: UnsafeMutablePointer<Float>) {
    let inner = w.counts.last!, step = w.step.last!
    forEachRun(shape, w) { i, o in
        if step == 1 { (y + o).update(from: x + i, count: inner); return }
        for k in 0..<inner { y[o + k] = x[i + k * step] }
    }
}

/// dInput of `stridedSlice`: dOutput added into the window, zero elsewhere (unless accumulating).
func stridedSliceBackward(dOutput dy: UnsafePointer<Float>, dInput dx: UnsafeMutablePointer<Float>, shape: [Int],
                          window w: SliceWindow, accumulate: Bool) {
    if !accumulate { dx.update(repeating: 0, count: shape.reduce(1, *)) }
    let inner = w.counts.last!, step = w.step.last!
    forEachRun(shape, w) { i, o in
        for k in 0..<inner { dx[i + k * step] += dy[o + k] }
    }
}

import Graph

// Squeeze-and-excitation reads one tensor x twice: a global average pool (the squeeze) and a
// multiply by the per-channel scale computed from it (the excite). x's gradient has two parts,
// dy_excite * s and dPool / pixels broadcast; unfused, the excite's backward writes the first
// over the whole tensor and the pool's backward reads it back to add the second. Fused, the
// excite's backward computes only the scale's gradient, and the pool's backward writes both
// parts in one pass (`channelScaleAndPoolBackward`): one read-modify-write of x's gradient (a
// few MB per block of EfficientNet) fewer, the same two roundings, so the same numbers.
struct SqueezeExcite {
    /// The pooled and scaled tensor, the scale (the multiply's other input), the pool.
    let full: Int, scale: Int, pool: Int
}

// When that tensor is a training-mode batch norm's fused swish (EfficientNet's bn -> swish ->
// squeeze-and-excitation), the pool's backward does not write the gradient at all: the batch
// norm's first backward pass makes it in registers from the excite's gradient, the scale and the
// pool's gradient (`ExciteGradient`), as it would have read it. One write and one read of the
// tensor fewer (4.2 MB per block5 block of EfficientNetB0 at batch 8), the same numbers.
/// A squeeze-and-excitation input's gradient not yet made: its multiply and pool nodes.
struct DeferredExcite {
    let multiply: Int, pool: Int
}

extension TrainingPlan {
    /// Multiply node -> its squeeze-and-excitation pattern: x [N, H, W, C] times s [N, 1, 1, C],
    /// x read by exactly that multiply and one global average pool below it (so the multiply's
    /// backward runs first and the pool's second, and nothing else writes x's gradient between).
    static func squeezeExcitePatterns(_ split: TrainingSplit) -> [Int: SqueezeExcite] {
        var consumers = [[Int]](repeating: [], count: split.nodes.count)
        for (j, node) in split.nodes.enumerated() { for input in node.inputs { consumers[input].append(j) } }
        var found: [Int: SqueezeExcite] = [:]
        for (m, node) in split.nodes.enumerated() {
            guard case .merge(.multiply) = node.op, node.inputs.count == 2, node.shape.count == 4,
                  node.inputs[0] != node.inputs[1] else { continue }
            let shape = node.shape, seShape = [shape[0], 1, 1, shape[3]]
            for (f, s) in [(node.inputs[0], node.inputs[1]), (node.inputs[1], node.inputs[0])]
            where split.nodes[f].shape == shape && split.nodes[s].shape == seShape {
                if case .external = split.nodes[f].op { continue }    // no gradient wanted
                guard f != split.logits, f != split.output, consumers[f].count == 2,
                      let p = consumers[f].first(where: { $0 != m }), p < m,
                      case .move(.globalPool(.average)) = split.nodes[p].op else { continue }
                found[m] = SqueezeExcite(full: f, scale: s, pool: p)
                break
            }
        }
        return found
    }
}

// In the forward pass the excite's multiply x * s is read only by the 1x1 convolution after it
// (EfficientNet's projection): at inference its scale goes into that product; in training its
// output was stored (4.8 MB per block5 block at batch 8) for the convolution's forward and the
// kernel's gradient to read back. Folded, neither pass reads a stored product: each makes the
// multiply's products as it reads x (`pointwiseConvScaledInput`, `pointwiseBackwardKernel`), so
// the multiply's output is never written, and the numbers are the same bits. The multiply's own
// backward reads x and s, never its output, and its gradient is still the convolution's input
// gradient.
extension TrainingPlan {
    /// 1x1 convolution -> the squeeze-and-excitation multiply that is its input and read by
    /// nothing else (and whose value nobody keeps). Folded only while AVX-512 is on
    /// (`foldsExcites`).
    static func excitesIntoConvolutions(_ split: TrainingSplit, _ patterns: [Int: SqueezeExcite],
                                        keeping: Set<Int>) -> [Int: Int] {
        var consumers = [[Int]](repeating: [], count: split.nodes.count)
        for (j, node) in split.nodes.enumerated() { for input in node.inputs { consumers[input].append(j) } }
        var found: [Int: Int] = [:]
        for m in patterns.keys where m != split.logits && m != split.output && !keeping.contains(m) {
            guard consumers[m].count == 1, let c = consumers[m].first, split.nodes[c].inputs == [m],
                  case .conv(let p, _, _) = split.nodes[c].op,
                  TrainingPlan.geometry(split.nodes, c, p).isPointwise else { continue }
            found[c] = m
        }
        return found
    }
}

extension TrainingPlan {
    /// Whether this pass folds the multiplies of `exciteIntoConv` (the kernels that do it are AVX-512).
    var foldsExcites: Bool { foldExciteIntoConv && KernelISA.avx512 && !exciteIntoConv.isEmpty }
}

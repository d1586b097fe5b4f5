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

import Graph

// A training-mode batch norm followed by an element-wise activation (EfficientNet's bn ->
// swish after every convolution) runs as one pass forward and one backward: the forward writes
// f(normalised x) straight into the activation's value, and the backward goes from the
// activation's gradient through f' and the norm in the batch norm's own two passes, recomputing
// the normalised value from x. Neither the normalised tensor nor its gradient is ever stored:
// four fewer passes over memory per pair, which are memory-bound at these sizes.
extension TrainingPlan {
    /// BN -> activation pairs that can fuse: the activation is the batch norm's only consumer, is
    /// element-wise, and the batch norm's value is read by nothing else (not the logits, the
    /// output, nor a value in `keeping`).
    static func batchNormActivationPairs(_ split: TrainingSplit, keeping: Set<Int>) -> [Int: Int] {
        var consumers = [Int](repeating: 0, count: split.nodes.count)
        for node in split.nodes { for input in node.inputs { consumers[input] += 1 } }
        var pairs: [Int: Int] = [:]
        for (j, node) in split.nodes.enumerated() {
            guard case .activation(let a) = node.op, a.kind != .softmax, a.kind != .logSoftmax,
                  node.inputs.count == 1 else { continue }
            let i = node.inputs[0]
            guard case .batchNorm = split.nodes[i].op, consumers[i] == 1, i != split.logits, i != split.output,
                  !keeping.contains(i), split.nodes[i].shape == node.shape else { continue }
            pairs[i] = j
        }
        return pairs
    }

    /// The activation of fused node `j`.
    func fusedActivation(_ j: Int) -> ActivationSpec {
        guard case .activation(let a) = nodes[j].op else { preconditionFailure("a fused node that is no activation") }
        return a
    }
}

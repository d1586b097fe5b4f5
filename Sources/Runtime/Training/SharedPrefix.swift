import Graph

// A student's frozen prefix that a teacher computes too, computed once.
//
// The seed's job is the common case: the teacher was fine-tuned from ImageNet's EfficientNetB0 with
// everything before block5a_expand_conv frozen, and the student is ImageNet's EfficientNetB0 with its
// base frozen. Both run the same frozen layers with the same weights on the same images, which
// Keras's loop computes twice. Here the teacher's pass hands the shared values over (the cut,
// below) and the student's prefix goes on from them, or is not run at all when its whole output
// is shared.
//
// "The same" is decided by content, never by names: a student node matches a teacher node when
// its inputs match (the models' inputs match by position and shape), its layer computes the same
// function (`LayerOp` equal: the whole parsed config but the name) and its weights are equal bit
// for bit. A node whose frozen form differs between a student's prefix and a teacher never matches:
// Dropout-like, stochastic-depth and augmentation layers draw noise in the student's training
// forward (Keras trains a frozen base's Dropout as any other) and are the identity in the
// teacher. So the seed's EfficientNet shares its stem and blocks 1a-2b up to block2b's
// drop-connect, about a quarter of an image's time at 228x228; a base called with
// `training=False` (its Dropout the identity in training too) shares all it has in common.
// Softmax never matches either (a teacher's session returns the logits in place of a softmax it
// ends in). The teacher must run in float32 (a bf16 teacher's values are not the student's).
//
// Both sides run the values through the same fused single-image plans, so the student gets the
// bits its own prefix would have made (`SharedPrefixTests`).
enum SharedPrefix {
    /// Student graph node -> a teacher graph node computing the same values, for the student's
    /// nodes in `within` (and the inputs, which match by position and shape).
    static func matching(student: LoadedModel, teacher: LoadedModel, within: Set<Int>) -> [Int: Int] {
        let sg = student.graph, tg = teacher.graph
        guard sg.inputs.count == tg.inputs.count else { return [:] }
        var match: [Int: Int] = [:]
        for (a, b) in zip(sg.inputs, tg.inputs) where sg.nodes[a].outputShape == tg.nodes[b].outputShape {
            match[a] = b
        }
        guard !match.isEmpty else { return [:] }
        var consumers: [Int: [Int]] = [:]
        for node in tg.nodes { for i in Set(node.inputs) { consumers[i, default: []].append(node.id) } }
        // Graph nodes come in an order where each follows its inputs.
        for node in sg.nodes where within.contains(node.id) && match[node.id] == nil && computesAlike(node) {
            let inputs = node.inputs.compactMap { match[$0] }
            guard !inputs.isEmpty, inputs.count == node.inputs.count else { continue }
            for c in consumers[inputs[0]] ?? [] {
                let other = tg.nodes[c]
                if other.op == node.op, other.inputs == inputs, other.outputShape == node.outputShape,
                   sameWeights(student.weights, node, teacher.weights, other) {
                    match[node.id] = c
                    break
                }
            }
        }
        return match
    }

    /// Whether a layer computes the same in a student's frozen prefix (Keras's training call) as
    /// in a teacher (inference). A Dropout or drop-path called with `training=False` (Keras's
    /// transfer-learning idiom, `base(x, training=False)`) or at rate 0 is the identity in both.
    static func computesAlike(_ node: GraphNode) -> Bool {
        switch node.op {
        case .input, .augment, .softmax: return false
        case .dropout(let rate, _, _), .stochasticDepth(let rate): return rate <= 0 || node.inferenceOnly
        case .activation(let a): return a.kind != .softmax && a.kind != .logSoftmax
        default: return true
        }
    }

    /// The same weights, in the same order, with the same shapes and bits.
    static func sameWeights(_ ws: WeightStore, _ a: GraphNode, _ wt: WeightStore, _ b: GraphNode) -> Bool {
        guard a.weights.count == b.weights.count else { return false }
        for (sa, sb) in zip(a.weights, b.weights) {
            guard sa.name == sb.name, sa.shape == sb.shape,
                  let x = ws.weight(sa.name, of: a)?.floats, let y = wt.weight(sb.name, of: b)?.floats,
                  x.count == y.count, x.elementsEqual(y, by: { $0.bitPattern == $1.bitPattern }) else { return false }
        }
        return true
    }

    /// Where the student's prefix (the nodes `needed` for `boundary`) leaves the shared values:
    /// the shared nodes that are the boundary, or that an unshared node of the prefix reads, in
    /// graph order. Nil when sharing would save nothing worth a cut (no shared convolution or
    /// dense layer) or a value at the cut has a size known only at run time.
    static func cut(graph: ModelGraph, boundary: [Int], needed: Set<Int>, shared: [Int: Int]) -> [Int]? {
        let inputs = Set(graph.inputs)
        guard needed.contains(where: { id in
            guard shared[id] != nil else { return false }
            switch graph.nodes[id].op {
            case .conv2d, .depthwiseConv2d, .separableConv2d, .dense: return true
            default: return false
            }
        }) else { return nil }
        var cut = Set(boundary.filter { shared[$0] != nil && !inputs.contains($0) })
        for id in needed where shared[id] == nil {
            for i in graph.nodes[id].inputs where shared[i] != nil && !inputs.contains(i) { cut.insert(i) }
        }
        guard !cut.isEmpty, cut.allSatisfy({ !graph.nodes[$0].outputShape.contains { $0 < 0 } }) else { return nil }
        return cut.sorted()
    }
}

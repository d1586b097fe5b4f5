/// A Keras model as a flat graph of primitive layers in topological order. Nested models are
/// inlined; each node remembers the models it sits in (`scope`), so weights and summaries can
/// still be reported per top-level layer.
public struct GraphNode: Sendable {
    public var id: Int
    /// The Keras layer name (unique within its enclosing model).
    public var name: String
    public var className: String
    /// Names of the enclosing models below the root, outermost first.
    public var scope: [String]
    public var op: LayerOp
    /// Producer node ids, in call order.
    public var inputs: [Int]
    public var outputShape: [Int]
    /// The weights this layer owns, in Keras's creation order for the layer.
    public var weights: [WeightSpec]
    /// The layer's trainable flag combined with every enclosing model's.
    public var trainable: Bool
    /// Called with `training=False` (itself or an enclosing model): batch normalization uses its
    /// moving statistics and dropout is off, in training too.
    public var inferenceOnly: Bool = false
    /// Set for an operation recorded as a layer (`OpLayers.swift`): 2 for tf-keras's
    /// TFOpLambda, 3 for a Keras 3 op. Such a model loads only in the Keras that wrote it.
    public var kerasOp: Int? = nil
    /// Config keys set on this layer that act only in training (regularizers, constraints),
    /// which the trainer does not apply: training this layer is refused.
    public var trainingOnlyKeys: [String] = []
    /// The `trainingOnlyKeys` entry of a noise layer (GaussianNoise, ...), whose training-time noise
    /// the trainer does not draw.
    public static let trainingNoise = "training-time noise"

    /// Identifies the Keras layer object: a layer called twice gives two nodes with one key,
    /// and they share weights.
    public var layerKey: String { (scope + [name]).joined(separator: "/") }
    /// The root model's layer that holds this node (its weight-file group).
    public var topLevelName: String { scope.first ?? name }

    /// Whether a weight of this layer is updated by training.
    public func isTrainable(_ weight: WeightSpec) -> Bool { trainable && weight.trainableKind }
}

/// One entry of the root model's `layers`: a layer, or a nested model shown as one row.
public struct TopLevelLayer: Sendable {
    public var name: String
    public var className: String
    /// Every node this layer created (all of a nested model's nodes).
    public var nodeIDs: [Int]
    /// The node whose output is this layer's output (last call), nil for a bare InputLayer.
    public var outputNodeIDs: [Int]
}

public struct ModelGraph: Sendable {
    public var name: String
    public var className: String
    public var kerasMajor: Int
    public var nodes: [GraphNode]
    public var inputs: [Int]
    public var outputs: [Int]
    public var topLevel: [TopLevelLayer]

    public func node(_ id: Int) -> GraphNode { nodes[id] }

    /// The first node of each distinct layer key: one per Keras layer object.
    public var uniqueLayers: [GraphNode] {
        var seen = Set<String>()
        return nodes.filter { seen.insert($0.layerKey).inserted }
    }

    /// Parameter counts as Keras's summary gives them: (total, trainable, non-trainable).
    public func parameterCounts(nodeIDs: [Int]? = nil) -> (total: Int, trainable: Int, nonTrainable: Int) {
        var seen = Set<String>()
        var trainable = 0, frozen = 0
        for id in nodeIDs ?? nodes.map(\.id) {
            let n = nodes[id]
            guard seen.insert(n.layerKey).inserted else { continue }
            for w in n.weights {
                if n.isTrainable(w) { trainable += w.count } else { frozen += w.count }
            }
        }
        return (trainable + frozen, trainable, frozen)
    }

    /// Finds a layer by name: a top-level layer first, then a unique nested one; `model/layer`
    /// paths (the tail of the nesting) select inside nested models. A layer called more than once
    /// gives its first call's output, as Keras's `layer.output` (`get_output_at(0)`).
    public func findLayer(_ name: String) throws -> Int {
        if let top = topLevel.first(where: { $0.name == name }), let out = top.outputNodeIDs.first { return out }
        let matches = nodes.filter { $0.name == name || $0.layerKey == name || $0.layerKey.hasSuffix("/" + name) }
        let keys = Set(matches.map(\.layerKey))
        guard let first = matches.first else { throw GraphError("model '\(self.name)' has no layer named '\(name)'") }
        guard keys.count == 1 else {
            throw GraphError("layer name '\(name)' is ambiguous in model '\(self.name)': \(keys.sorted().joined(separator: ", "))")
        }
        return first.id
    }

    /// Every node's output shape (batch excluded) for concrete input shapes: unknown sizes in the
    /// config (-1) become the sizes of the data.
    public func concreteShapes(inputShapes: [[Int]]) throws -> [Int: [Int]] {
        var shapes: [Int: [Int]] = [:]
        for (id, shape) in zip(inputs, inputShapes) { shapes[id] = shape }
        for node in nodes where shapes[node.id] == nil {
            let ins = node.inputs.map { shapes[$0]! }
            let sig = try signature(of: node.op, inputs: ins, fail: { GraphError("layer '\(node.layerKey)': \($0)") })
            shapes[node.id] = sig.output
        }
        return shapes
    }
}

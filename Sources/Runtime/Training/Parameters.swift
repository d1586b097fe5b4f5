import Graph
import H5Model

/// The student's weights while it trains: one buffer per Keras weight, with a gradient buffer for
/// the trainable ones. Non-trainable state (BatchNormalization's moving statistics) lives here too,
/// because training updates it.
public final class ParameterStore {
    public struct Entry {
        public let layerKey: String
        public let spec: WeightSpec
        public let fileName: String
        public let trainable: Bool
        public let values: UnsafeMutablePointer<Float>
        /// nil for non-trainable weights.
        public let gradient: UnsafeMutablePointer<Float>?
        public var count: Int { spec.count }
    }

    public private(set) var entries: [Entry] = []
    private var index: [String: Int] = [:]

    /// Copies every bound weight of the model; `trainable` decides which get gradients.
    public init(model: LoadedModel, trainable: (GraphNode, WeightSpec) -> Bool) {
        for node in model.graph.uniqueLayers {
            for bound in model.weights.weights(of: node) {
                let n = max(1, bound.spec.count)
                let values = allocateAlignedFloats(n)
                let floats = bound.floats
                values.initialize(repeating: 0, count: n)
                for i in 0..<floats.count { values[i] = floats[i] }
                let isTrainable = trainable(node, bound.spec)
                var gradient: UnsafeMutablePointer<Float>? = nil
                if isTrainable {
                    gradient = allocateAlignedFloats(n)
                    gradient!.initialize(repeating: 0, count: n)
                }
                index[Self.key(node.layerKey, bound.spec.name)] = entries.count
                entries.append(Entry(layerKey: node.layerKey, spec: bound.spec, fileName: bound.fileName,
                                     trainable: isTrainable, values: values, gradient: gradient))
            }
        }
    }

    deinit {
        for e in entries {
            e.values.deallocate()
            e.gradient?.deallocate()
        }
    }

    static func key(_ layer: String, _ weight: String) -> String { layer + "\u{1}" + weight }

    /// The entry index of a layer's weight, if the model has it.
    public func find(_ node: GraphNode, _ weight: String) -> Int? { index[Self.key(node.layerKey, weight)] }

    public func entry(_ i: Int) -> Entry { entries[i] }

    public var trainableCount: Int { entries.filter(\.trainable).reduce(0) { $0 + $1.count } }

    public func zeroGradients() {
        for e in entries { e.gradient?.update(repeating: 0, count: e.count) }
    }

    /// Zeroes the gradients of all entries but those in `written` (entry indices a backward pass
    /// overwrote): the rest must read 0, and rewriting the others first would cost a pass over
    /// every trainable weight each step.
    func zeroGradients(except written: Set<Int>) {
        for (i, e) in entries.enumerated() where !written.contains(i) { e.gradient?.update(repeating: 0, count: e.count) }
    }

    /// A copy of every weight (trainable or not, as Keras's get_weights), for `restore`.
    public func snapshot() -> [[Float]] { entries.map { Array(UnsafeBufferPointer(start: $0.values, count: $0.count)) } }

    /// Puts back a `snapshot()` (Keras's set_weights).
    public func restore(_ snapshot: [[Float]]) {
        precondition(snapshot.count == entries.count, "a snapshot of another parameter store")
        for (e, values) in zip(entries, snapshot) {
            precondition(values.count == e.count)
            if e.count > 0 { values.withUnsafeBufferPointer { e.values.update(from: $0.baseAddress!, count: e.count) } }
        }
    }

    /// The weights as a WeightStore (same names and order as the loaded model), e.g. for export.
    /// Integer weights (Normalization's count) keep their stored type.
    public func weightStore(like original: WeightStore) -> WeightStore {
        var store = original
        for e in entries {
            guard var list = store.byLayer[e.layerKey], let k = list.firstIndex(where: { $0.spec.name == e.spec.name }) else { continue }
            let floats = Array(UnsafeBufferPointer(start: e.values, count: e.count))
            switch list[k].values {
            case .float32: list[k].values = .float32(floats)
            case .float64: list[k].values = .float64(floats.map(Double.init))
            case .float16: list[k].values = .float16(floats.map { Float16($0).bitPattern })
            case .int32(let old): list[k].values = .int32(zip(old, floats).map { Int32(exactly: $1.rounded()) ?? $0 })
            case .int64(let old): list[k].values = .int64(zip(old, floats).map { Int64(exactly: $1.rounded()) ?? $0 })
            }
            store.byLayer[e.layerKey] = list
        }
        return store
    }
}

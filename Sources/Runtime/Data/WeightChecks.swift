// A NaN or infinite weight makes every output it reaches NaN: inference then writes NaN rows and
// training stops at its first loss without saying why. Found once, up front, and named.
import Foundation
import Graph

/// The first weight of a model holding a NaN or an infinity, in layer order.
public struct NonFiniteWeight: Equatable, Sendable {
    /// The layer's path in the model (`efficientnetb0/stem_conv`).
    public var layer: String
    /// The weight's name as the file has it (`stem_conv/kernel:0`).
    public var weight: String
    /// The flat index of the first bad value, and the value.
    public var index: Int
    public var value: Float
    /// Bad values in this weight.
    public var count: Int

    public var description: String {
        "layer '\(layer)' weight '\(weight)' holds \(value) at index \(index)"
            + (count > 1 ? " (and \(count - 1) more non-finite value\(count == 2 ? "" : "s"))" : "")
    }
}

extension LoadedModel {
    /// The first weight (in the model's layer order) with a non-finite value, or nil.
    public func firstNonFiniteWeight() -> NonFiniteWeight? {
        for node in graph.uniqueLayers {
            for weight in weights.weights(of: node) {
                let values = weight.floats
                guard let i = values.firstIndex(where: { !$0.isFinite }) else { continue }
                return NonFiniteWeight(layer: node.layerKey, weight: weight.fileName, index: i, value: values[i],
                                       count: values.reduce(0) { $0 + ($1.isFinite ? 0 : 1) })
            }
        }
        return nil
    }
}

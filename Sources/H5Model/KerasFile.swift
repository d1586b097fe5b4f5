/// The Keras legacy HDF5 layout, as data: what `model.save("x.h5")` and `model.save_weights("x.h5")`
/// write. H5Model knows the *file*; it does not know what a layer computes (that is Graph's job).

/// Values of one weight dataset, in its stored element type (kept so a round trip is bit-identical;
/// Normalization's `count` is int64 in Keras 2 and int32 in Keras 3 under JAX).
public enum WeightValues: Equatable, Sendable {
    case float32([Float])
    case float64([Double])
    case float16([UInt16])   // raw IEEE half bits
    case int32([Int32])
    case int64([Int64])

    public var count: Int {
        switch self {
        case .float32(let v): return v.count
        case .float64(let v): return v.count
        case .float16(let v): return v.count
        case .int32(let v): return v.count
        case .int64(let v): return v.count
        }
    }

    /// The values as Float32, the runtime's element type.
    public var floats: [Float] {
        switch self {
        case .float32(let v): return v
        case .float64(let v): return v.map { Float($0) }
        case .float16(let v): return v.map { Float(Float16(bitPattern: $0)) }
        case .int32(let v): return v.map { Float($0) }
        case .int64(let v): return v.map { Float($0) }
        }
    }
}

/// One dataset of a layer group: `name` is the entry of `weight_names` (e.g. `stem_conv/kernel:0`,
/// or `sequential/dense/kernel` in Keras 3), `shape` the HDF5 dimensions (row-major, as numpy).
public struct Weight: Equatable, Sendable {
    public var name: String
    public var shape: [Int]
    public var values: WeightValues

    public init(name: String, shape: [Int], values: WeightValues) {
        self.name = name
        self.shape = shape
        self.values = values
    }

    /// A float32 weight, the common case (e.g. a student's trained kernel).
    public init(name: String, shape: [Int], floats: [Float]) {
        self.init(name: name, shape: shape, values: .float32(floats))
    }

    /// The values as Float32, whatever the stored type.
    public var floats: [Float] { values.floats }
}

/// A layer's group: its weights in `weight_names` order (the order of the saved model's trainable
/// then non-trainable weights, which depends on what was frozen at save time).
public struct LayerWeights: Equatable, Sendable {
    public var name: String
    public var weights: [Weight]

    public init(name: String, weights: [Weight]) {
        self.name = name
        self.weights = weights
    }
}

/// A weights group: the root of a weights-only file, or `/model_weights` in a full-model file.
public struct WeightsGroup: Equatable, Sendable {
    /// The `layer_names` attribute (joined from `layer_names0`, `layer_names1`, ... when split).
    public var layerNames: [String]
    /// One entry per name in `layerNames`, same order.
    public var layers: [LayerWeights]
    public var kerasVersion: String?
    public var backend: String?

    public init(layerNames: [String], layers: [LayerWeights], kerasVersion: String?, backend: String?) {
        self.layerNames = layerNames
        self.layers = layers
        self.kerasVersion = kerasVersion
        self.backend = backend
    }

    public func layer(named name: String) -> LayerWeights? {
        layers.first { $0.name == name }
    }
}

/// A whole Keras HDF5 file.
public struct KerasH5File: Equatable, Sendable {
    /// Root `model_config` (JSON text) in a full-model file; nil in a weights-only file.
    public var modelConfig: String?
    /// Root `training_config` (JSON text), when the model was compiled.
    public var trainingConfig: String?
    /// Root `keras_version` / `backend` (full-model files); weights-only files carry them on `weights`.
    public var kerasVersion: String?
    public var backend: String?
    public var weights: WeightsGroup

    public init(modelConfig: String?, trainingConfig: String?, kerasVersion: String?, backend: String?,
                weights: WeightsGroup) {
        self.modelConfig = modelConfig
        self.trainingConfig = trainingConfig
        self.kerasVersion = kerasVersion
        self.backend = backend
        self.weights = weights
    }

    public var isFullModel: Bool { modelConfig != nil }
}

/// Every failure of this module: one line that names the file and the group, attribute or dataset.
public struct H5ModelError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

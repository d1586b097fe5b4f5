import Foundation

/// What a layer's config may hold besides the keys its parser reads (`LayerConfig.unreadKeys`).
/// Anything else is refused: a key this reader ignored could change what the layer computes.
enum ConfigAudit {
    /// Keys that change nothing a loaded model computes: identity, the dtype (float32 is checked
    /// where weights are read), input-shape bookkeeping and how weights were first initialised.
    static let inert: Set<String> = [
        "name", "trainable", "dtype", "dtype_policy", "batch_input_shape", "batch_shape", "input_shape", "batch_size",
        "input_dim", "input_dtype", "dynamic", "autocast", "sparse", "ragged", "optional",
        // BatchNormalization's cross-replica statistics: one replica here.
        "synchronized",
    ]

    /// Keys that act only while training (a penalty added to the loss, a projection after each
    /// update). They are kept on the node: training such a layer is refused, running it is not.
    static func actsInTraining(_ key: String) -> Bool {
        key.hasSuffix("_regularizer") || key.hasSuffix("_constraint")
    }

    /// Layers whose training-time noise the trainer does not draw (identity at inference); they
    /// carry `GraphNode.trainingNoise`, refused wherever they run in training mode, trainable or
    /// not (Keras draws the noise in a frozen part too).
    /// The augmentation layers are not among them: the trainer applies those (`LayerOp.augment`).
    static let noiseLayers: Set<String> = ["GaussianNoise", "GaussianDropout", "AlphaDropout"]

    /// Checks the keys no parser read. Returns those that act in training and are set.
    static func check(_ config: LayerConfig) throws -> [String] {
        var training: [String] = []
        for key in config.unreadKeys {
            if inert.contains(key) || key.hasSuffix("_initializer") { continue }
            if actsInTraining(key) {
                if let value = config.dict[key], !(value is NSNull) { training.append(key) }
                continue
            }
            throw config.fail("config key '\(key)' (\(briefJSON(config.dict[key]!))) is not understood")
        }
        return training
    }
}

// Reading the Keras legacy HDF5 layout (reference §1, §2) into KerasH5File.

extension KerasH5File {
    /// Reads a full-model file (`model.save("x.h5")`: root `model_config`, group `model_weights`)
    /// or a weights-only file (`save_weights("x.h5")`: root `layer_names`). `optimizer_weights`
    /// and `top_level_model_weights` are ignored. Every failure is one line naming file and object.
    ///
    /// The file is read first in a forked child (see IsolatedRead): a file that crashes or hangs
    /// libhdf5 there becomes an error here.
    public static func read(path: String) throws -> KerasH5File {
        try withHDF5 { try IsolatedRead.guarded(path: path) { try readInProcess(path: path) } }
    }

    /// `read` for a file that may be in Keras 3's weights layout instead (`Keras3Weights`): nil
    /// for such a file, else the legacy file read. One forked child tells the layout and reads the
    /// file, where `Keras3Weights.isKeras3Layout` and then `read` would fork one each.
    public static func readUnlessKeras3Layout(path: String) throws -> KerasH5File? {
        try withHDF5 {
            try IsolatedRead.guarded(path: path) { () throws -> KerasH5File? in
                try Keras3Weights.isKeras3LayoutInProcess(path: path) ? nil : try readInProcess(path: path)
            }
        }
    }

    /// The read itself; the caller holds the HDF5 lock (the forked child must not take it again:
    /// a recursive lock's owner is the parent's thread, which the child does not have).
    static func readInProcess(path: String) throws -> KerasH5File {
        let file = try H5File.open(path)
        let root = try file.root()
        // Keras's own rule (load_weights): `layer_names` at the root makes the root the weights
        // group; otherwise the weights are in `model_weights`.
        let weightsGroup: H5Group
        if try root.hasStringList("layer_names") {
            weightsGroup = root
        } else if let group = try root.group("model_weights") {
            weightsGroup = group
        } else {
            throw H5ModelError("\(path): not a Keras model file "
                               + "(an HDF5 file with no 'layer_names' attribute and no 'model_weights' group)")
        }
        let weightsOnly = weightsGroup === root
        return KerasH5File(
            modelConfig: try root.readString("model_config"),
            trainingConfig: try root.readString("training_config"),
            // In a weights-only file these root attributes belong to the weights group.
            kerasVersion: weightsOnly ? nil : try root.readString("keras_version"),
            backend: weightsOnly ? nil : try root.readString("backend"),
            weights: try readWeightsGroup(weightsGroup))
    }

    /// Walks `layer_names`, then each layer's `weight_names`; names may contain "/" and are always
    /// resolved inside their group (a layer group may also hold other layers' groups, §1.4).
    private static func readWeightsGroup(_ group: H5Group) throws -> WeightsGroup {
        let layerNames = try group.readStringList("layer_names") ?? []
        let layers = try layerNames.map { name -> LayerWeights in
            guard let layerGroup = try group.group(name) else {
                throw H5ModelError(group.context("'layer_names' of '\(group.path)' lists layer '\(name)' "
                                                 + "but the file has no group '\(group.childPath(name))'"))
            }
            return LayerWeights(name: name, weights: try readWeights(of: layerGroup, layer: name))
        }
        return WeightsGroup(layerNames: layerNames, layers: layers,
                            kerasVersion: try group.readString("keras_version"),
                            backend: try group.readString("backend"))
    }

    private static func readWeights(of group: H5Group, layer: String) throws -> [Weight] {
        // A missing `weight_names` is an empty list for Keras too (load_attributes_from_hdf5_group).
        let names = try group.readStringList("weight_names") ?? []
        return try names.map { name in
            guard let dataset = try group.dataset(name) else {
                throw H5ModelError(group.context("layer group '\(layer)' lists weight '\(name)' "
                                                 + "but the file has no such dataset"))
            }
            let (shape, values) = try dataset.read()
            return Weight(name: name, shape: shape, values: values)
        }
    }
}

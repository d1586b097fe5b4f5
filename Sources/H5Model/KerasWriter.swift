// Writing the Keras legacy HDF5 layout (reference §1, §2) so that every Keras loads it.
import Foundation

extension KerasH5File {
    /// Written when `keras_version` is unset: without one, Keras 2 takes the file for Keras 1 and
    /// "converts" its weights. Only "1" changes any loader's behaviour.
    public static let defaultKerasVersion = "2.15.0"
    public static let defaultBackend = "tensorflow"

    /// Writes the file as Keras does: a full-model file when `modelConfig` is set, else weights only.
    /// The file appears complete or not at all: it is written to a temporary file in the target's
    /// folder and renamed over the target.
    ///
    /// String attributes: `model_config` / `training_config` variable-length (they exceed 64 KB);
    /// `layer_names`, `weight_names`, `keras_version`, `backend` fixed-length NULLPAD ASCII, which
    /// every Keras reads back as bytes (TF <= 2.4 cannot decode variable-length ones under h5py 3).
    public func write(to path: String) throws {
        try write(to: path, attachment: nil)
    }

    /// As `write(to:)`, with `attachment` (when given) stored in the same file, so the two appear
    /// together or not at all.
    public func write(to path: String, attachment: H5Attachment?) throws {
        try checkConsistency(path)
        try withHDF5 {
            try replaceAtomically(path) { temporaryPath in
                let file = try H5File.create(temporaryPath, displayPath: path)
                try writeContents(file)   // every handle but the file's dies in here
                try attachment?.write(into: file.root())
                try file.close()
            }
        }
    }

    private func writeContents(_ file: H5File) throws {
        let root = try file.root()
        let version = weights.kerasVersion ?? kerasVersion ?? Self.defaultKerasVersion
        let backendName = weights.backend ?? backend ?? Self.defaultBackend
        guard let modelConfig else {
            return try writeWeightsGroup(root, version: version, backend: backendName)
        }
        // Root attributes in Keras's order (saving_utils.model_metadata), then the weights group.
        try root.writeFixedStrings("keras_version", [kerasVersion ?? version], scalar: true)
        try root.writeFixedStrings("backend", [backend ?? backendName], scalar: true)
        try root.writeVariableStrings("model_config", [modelConfig], utf8: false, scalar: true)
        if let trainingConfig {
            try root.writeVariableStrings("training_config", [trainingConfig], utf8: false, scalar: true)
        }
        try writeWeightsGroup(root.createGroup("model_weights"), version: version, backend: backendName)
    }

    private func writeWeightsGroup(_ group: H5Group, version: String, backend: String) throws {
        try group.writeStringList("layer_names", weights.layerNames)
        try group.writeFixedStrings("backend", [backend], scalar: true)
        try group.writeFixedStrings("keras_version", [version], scalar: true)
        // Groups are created in sorted-name order, as Keras does, so `blk` exists before `blk/dense`
        // makes it an intermediate group; `layer_names` keeps the model's order.
        let sorted = weights.layers.sorted { $0.name.unicodeScalars.lexicographicallyPrecedes($1.name.unicodeScalars) }
        for layer in sorted {
            let layerGroup = try group.createGroup(layer.name)
            try layerGroup.writeStringList("weight_names", layer.weights.map(\.name))
            for weight in layer.weights {
                try layerGroup.writeDataset(weight.name, shape: weight.shape, values: weight.values)
            }
        }
        // Keras >= 2.7 adds the model's own (normally no) weights here; older loaders ignore it.
        if !weights.layerNames.contains("top_level_model_weights"), try group.child("top_level_model_weights") == nil {
            try group.createGroup("top_level_model_weights").writeFloat64s("weight_names", [])
        }
    }

    /// Checks what HDF5 would only half-catch, before any file is touched.
    private func checkConsistency(_ path: String) throws {
        let names = weights.layers.map(\.name)
        guard names == weights.layerNames else {
            throw H5ModelError("\(path): cannot write: the layers \(names) do not match layer_names \(weights.layerNames)")
        }
        if let duplicate = firstDuplicate(names) {
            throw H5ModelError("\(path): cannot write: layer '\(duplicate)' appears twice in layer_names")
        }
        for layer in weights.layers {
            if let duplicate = firstDuplicate(layer.weights.map(\.name)) {
                throw H5ModelError("\(path): cannot write: layer '\(layer.name)' has weight '\(duplicate)' twice")
            }
            for weight in layer.weights where product(weight.shape) != weight.values.count || weight.shape.contains(where: { $0 < 0 }) {
                throw H5ModelError("\(path): cannot write: weight '\(weight.name)' of layer '\(layer.name)' has shape "
                                   + "\(shapeText(weight.shape)) but \(weight.values.count) values")
            }
        }
    }

    private func firstDuplicate(_ names: [String]) -> String? {
        var seen = Set<String>()
        return names.first { !seen.insert($0).inserted }
    }
}

/// Runs `write` on a temporary file beside `path` (`.<name>.tmp-<pid>`) and renames it over `path`
/// only when `write` succeeded; on any error (a full disk included) the temporary file is removed
/// and a previous file at `path` is left as it was. The one atomic writer of the package's files.
public func replaceAtomically(_ path: String, _ write: (String) throws -> Void) throws {
    try OutputPaths.checkLocation(path)
    let temporary = OutputPaths.temporaryPath(for: path)
    do {
        try write(temporary)
        guard rename(temporary, path) == 0 else {
            throw H5ModelError("\(path): cannot replace it with the new file: \(String(cString: strerror(errno)))")
        }
    } catch {
        unlink(temporary)
        throw error
    }
}

/// Writes `data` to a new file at `path` (not atomically: call it inside `replaceAtomically`).
/// A short write (a full disk) is an error naming `displayPath` and errno's reason.
public func writeWhole(_ data: Data, to path: String, displayPath: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o666)
    guard fd >= 0 else { throw H5ModelError("\(displayPath): cannot write: \(String(cString: strerror(errno)))") }
    var failure: String?
    data.withUnsafeBytes { bytes in
        var done = 0
        while done < bytes.count {
            let n = Foundation.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { failure = String(cString: strerror(n < 0 ? errno : ENOSPC)); return }
            done += n
        }
    }
    // close(2) can report what a delayed write met (NFS, some full file systems).
    if close(fd) != 0 && failure == nil { failure = String(cString: strerror(errno)) }
    if let failure { throw H5ModelError("\(displayPath): cannot write: \(failure)") }
}

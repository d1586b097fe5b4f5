import Foundation

/// One layer's `config` in the form the target Keras accepts. Each rule below fixes a refusal or
/// a wrong result observed with tf-keras 2.21 / Keras 3.15 (fixtures/check_export.py checks all):
/// - `dtype`: Keras 3's DTypePolicy object -> its name (tf-keras reads names);
/// - nested objects (initializers, regularizers, constraints): `{"class_name", "config"}` only,
///   and no Keras 3.15 `input_axes`/`output_axes` (tf-keras initializers reject them);
/// - InputLayer: Keras 3 `batch_shape` -> `batch_input_shape` (tf-keras rejects `batch_shape`;
///   Keras 3's legacy path renames it back); `optional: false` dropped;
/// - other layers: no `batch_input_shape` (Keras 3 turns it into an `input_shape` that still
///   has the batch axis; the input shape lives in the InputLayer);
/// - DepthwiseConv2D / SeparableConv2D: no `groups` (Keras 3: unexpected argument), Separable
///   also no `kernel_*` (tf-keras adds them from the Conv base class; Keras 3 rejects them);
/// - BatchNormalization `axis: [3]` -> `3` (both read an int; Keras 3 reads the list only on its
///   legacy path, which a `module` key anywhere in the entry would switch off);
/// - SpatialDropout: no `trainable`/`noise_shape` (Keras 3: unexpected arguments);
/// - Resizing / CenterCrop / RandomCrop: no Keras 3 `data_format`, `pad_to_aspect_ratio`, `fill_*`,
///   `antialias` for tf-keras; RandomCrop only for the Keras that wrote it (tf-keras resizes at
///   inference, Keras 3 passes images through); LayerNormalization: no `rms_scaling` for tf-keras,
///   and over several axes a `module` key for Keras 3 (`nativeModule`);
/// - LeakyReLU: `alpha` for Keras 2 (Keras 3 still reads it), `negative_slope` for Keras 3 only;
/// - activations: Keras 3's `silu` -> `swish` (same function in both); names whose meaning
///   differs between versions or that one version lacks are refused (`exportActivation`);
/// - `trainable`: the layer's effective flag (its own and every enclosing model's), so the
///   weight order a loader expects does not depend on how it applies a model-level flag;
/// - Normalization with adapted statistics inside a nested model, for Keras 3: mean and variance
///   move into the config (Keras 3.15's .h5 loader calls `finalize_state` on top-level layers
///   only, so a nested one would keep its build-time mean 0 / variance 1).
struct LayerConfigExporter {
    let className: String
    let name: String
    let node: GraphNode?
    let target: KerasTarget
    let sourceMajor: Int
    let nested: Bool
    let weights: WeightStore
    let foldsNormalization: Bool

    var context: String { "layer '\(name)' of class '\(className)'" }

    /// The `module` to put on the entry so that Keras 3 deserializes it natively rather than on its
    /// legacy path, where only needed: Keras 3.15's legacy path (taken for an entry without
    /// `module`, in every format) keeps an `axis` list only when it has one entry, so a
    /// LayerNormalization over several axes would come back normalizing over the last one.
    /// tf-keras reads the key (it writes it itself).
    func nativeModule(_ config: [String: Any]) -> String? {
        guard className == "LayerNormalization", target.loadsInKeras3, let axes = config["axis"] as? [Any], axes.count > 1 else {
            return nil
        }
        return "keras.layers"
    }

    /// tf-keras writes the classes it registers in a package under `Package>Class`
    /// (`Custom>CustomScaleLayer`); Keras 3 knows them by the class name alone.
    var exportedClassName: String {
        guard target.loadsInKeras3, let bare = className.split(separator: ">").last else { return className }
        return String(bare)
    }

    /// The exported config, and whether Normalization statistics moved into it.
    func export(_ source: [String: Any]) throws -> (config: [String: Any], folded: Bool) {
        var c: [String: Any] = [:]
        for (key, value) in source { c[key] = legacyObject(value) }
        if let dtype = dtypeName(source["dtype"]) { c["dtype"] = dtype }
        try dropKeras3Only(&c)
        if className == "InputLayer" {
            if let shape = c.removeValue(forKey: "batch_shape") { c["batch_input_shape"] = shape }
            if let optional = c["optional"], isJSONBool(optional), !(optional as! NSNumber).boolValue {
                c["optional"] = nil
            }
            return (c, false)
        }
        c["batch_input_shape"] = nil
        c["input_shape"] = nil
        switch className {
        case "DepthwiseConv2D":
            c["groups"] = nil
        case "SeparableConv2D", "SeparableConvolution2D":
            for key in ["groups", "kernel_initializer", "kernel_regularizer", "kernel_constraint"] { c[key] = nil }
        case "BatchNormalization":
            if let axis = c["axis"] as? [Any], axis.count == 1 { c["axis"] = axis[0] }
        case "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D":
            c["trainable"] = nil
            c["noise_shape"] = nil
        case "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness":
            // tf-keras's generator choice, unknown to Keras 3; Keras 3's data_format (channels_last,
            // checked when read) and RandomContrast's default value_range, unknown to tf-keras.
            if target.loadsInKeras3 { c["rng_type"] = nil }
            // A number f is RandomContrast's [f, f] in tf-keras and [0, f] in Keras 3; both read a
            // pair [lower, upper] alike, so the other Keras gets the pair.
            // (The number stays the value read, a JSONDecimal, so it is written as Keras wrote it.)
            if className == "RandomContrast", target.loadsInKeras3 != (sourceMajor >= 3) || target == .both,
               let f = c["factor"], !(f is [Any]) {
                c["factor"] = sourceMajor < 3 ? [f, f] : [NSNumber(value: 0), f]
            }
            if target.loadsInKeras2 {
                c["data_format"] = nil
                if className == "RandomContrast", let range = c["value_range"] as? [Any], range.compactMap(number) == [0, 255] {
                    c["value_range"] = nil
                }
            }
        case "Resizing", "CenterCrop", "RandomCrop":
            // Keras 3's keys, unknown to tf-keras; their values were checked to be the ones tf-keras
            // computes (channels_last, no padding to the aspect ratio, no antialiasing) when read.
            if target.loadsInKeras2 {
                for key in ["data_format", "pad_to_aspect_ratio", "fill_mode", "fill_value", "antialias"] { c[key] = nil }
            }
            if className == "RandomCrop", target.loadsInKeras2 != (sourceMajor < 3) || target == .both {
                throw GraphError("\(context): at inference tf-keras resizes the images to (height, width) where Keras 3 "
                                 + "passes them through unchanged; write it for Keras \(sourceMajor < 3 ? 2 : 3) only")
            }
        case "LayerNormalization":
            if target.loadsInKeras2, let rms = c.removeValue(forKey: "rms_scaling") as? NSNumber, rms.boolValue {
                throw GraphError("\(context): rms_scaling is a Keras 3 feature tf-keras cannot load; write it for Keras 3 only")
            }

        case "LeakyReLU":
            if let slope = c.removeValue(forKey: "negative_slope") ?? c.removeValue(forKey: "alpha") {
                c[target == .keras3 ? "negative_slope" : "alpha"] = slope
            }
        default:
            break
        }
        if let activation = c["activation"] { c["activation"] = try exportActivation(activation) }
        if c["trainable"] != nil, let node { c["trainable"] = NSNumber(value: node.trainable) }
        let folded = try foldNormalization(&c)
        return (c, folded)
    }

    /// Keras 3-only keys: dropped when they hold their default (null), refused for Keras 2 otherwise.
    private func dropKeras3Only(_ c: inout [String: Any]) throws {
        for key in ["quantization_config", "lora_rank", "lora_alpha"] where c[key] != nil {
            if c[key] is NSNull || !target.loadsInKeras2 {
                if c[key] is NSNull { c[key] = nil }
                continue
            }
            throw GraphError("\(context): '\(key)' is a Keras 3 feature tf-keras cannot load", remedy: .kerasVersion(.keras3))
        }
    }

    func exportActivation(_ value: Any) throws -> String {
        let name: String
        if let s = value as? String {
            name = s
        } else if let d = value as? [String: Any], let s = d["config"] as? String ?? d["class_name"] as? String {
            name = s          // Keras 3's {"class_name": "function", "config": "relu", ...}
        } else {
            throw GraphError("\(context): activation \(value) is not a name")
        }
        switch name {
        case "silu", "swish":
            return target == .keras3 ? "silu" : "swish"
        case "hard_sigmoid" where sourceMajor >= 3 && target.loadsInKeras2:
            throw GraphError("\(context): activation 'hard_sigmoid' is Keras 3's clip(x/6 + 0.5, 0, 1), which tf-keras "
                             + "cannot express (its 'hard_sigmoid' is clip(0.2x + 0.5, 0, 1))", remedy: .kerasVersion(.keras3))
        case "hard_sigmoid" where sourceMajor < 3 && target.loadsInKeras3:
            throw GraphError("\(context): activation 'hard_sigmoid' is tf-keras's clip(0.2x + 0.5, 0, 1), which Keras 3 "
                             + "cannot express (its 'hard_sigmoid' is clip(x/6 + 0.5, 0, 1))", remedy: .kerasVersion(.keras2))
        case "hard_silu" where target.loadsInKeras2, "hard_swish" where target.loadsInKeras2:
            throw GraphError("\(context): activation '\(name)' exists in Keras 3 only", remedy: .kerasVersion(.keras3))
        default:
            return name
        }
    }

    private func foldNormalization(_ c: inout [String: Any]) throws -> Bool {
        guard foldsNormalization, className == "Normalization", nested, target.loadsInKeras3, let node,
              case .normalization(nil, _, _) = node.op else { return false }
        guard let mean = weights.weight("mean", of: node), let variance = weights.weight("variance", of: node) else {
            throw GraphError("\(context): the model has no values for its mean and variance")
        }
        c["mean"] = mean.floats.map { NSNumber(value: Double($0)) }
        c["variance"] = variance.floats.map { NSNumber(value: Double($0)) }
        return true
    }
}

/// A serialized Keras object in the legacy form both loaders read: `{"class_name", "config"}`
/// without `module`/`registered_name`, recursively; other values unchanged.
func legacyObject(_ value: Any) -> Any {
    if let list = value as? [Any] { return list.map(legacyObject) }
    guard let dict = value as? [String: Any] else { return value }
    guard let className = dict["class_name"] as? String, let config = dict["config"] else {
        return dict.mapValues(legacyObject)
    }
    guard var inner = config as? [String: Any] else { return ["class_name": className, "config": config] }
    for key in ["input_axes", "output_axes"] { inner[key] = nil }   // Keras 3.15 initializers only
    return ["class_name": className, "config": inner.mapValues(legacyObject)]
}

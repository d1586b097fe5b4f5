import Foundation

/// Where Keras 3 keeps each layer's variables in its own weights layout (`.keras`, `.weights.h5`).
///
/// keras/src/saving/saving_lib.py `_save_state` walks the object tree: a Sequential or Functional
/// model first yields its `layers` list, and `_save_container_state` names each element after
/// its *class*, not its layer name: `naming.to_snake_case(cls.__name__)`, then `_1`, `_2`, ...
/// for later elements of the same class in the same list (`_get_unique_name`). So a model's
/// second Dense is `layers/dense_1` whatever it is called, and a Conv2D inside a nested
/// Functional is `layers/functional/layers/conv2d`. A model's `layers` is its config's `layers`
/// in order (Functional: the depth-sorted operations its `get_config` lists and `from_config`
/// rebuilds in the same order; Sequential: without the leading InputLayer, which only affects the
/// `input_layer` count). Keras >= 3.6 also writes the layer's name on the `vars` group.
public enum Keras3Paths {
    /// Layer key (`GraphNode.layerKey`: enclosing models below the root, then the name, joined by
    /// "/") -> the object's path (`layers/dense_1`), for every layer and nested model of the
    /// config `root` (`{"class_name", "config"}`, either Keras schema).
    public static func paths(config root: [String: Any]) -> [String: String] {
        var out: [String: String] = [:]
        walk(root, scope: [], prefix: "", into: &out)
        return out
    }

    private static func walk(_ model: [String: Any], scope: [String], prefix: String, into out: inout [String: String]) {
        let isSequential = model["class_name"] as? String == "Sequential"
        let config = model["config"]
        let layers = (config as? [String: Any])?["layers"] as? [Any] ?? config as? [Any] ?? []
        var used: [String: Int] = [:]
        for (index, item) in layers.enumerated() {
            guard let entry = item as? [String: Any], let className = entry["class_name"] as? String else { continue }
            // Keras 3's operations (`x + 3.0`) are not among `model.layers`, so they take no path.
            if isOpLayer(entry, className: className) { continue }
            let layerConfig = entry["config"] as? [String: Any] ?? [:]
            // The names GraphBuilder gives (Sequential entries may lack a name in Keras 2.0 files).
            let name = isSequential
                ? (layerConfig["name"] as? String) ?? (entry["name"] as? String) ?? "\(className.lowercased())_\(index)"
                : (entry["name"] as? String) ?? (layerConfig["name"] as? String) ?? "?"
            let path = prefix + "layers/" + uniqueName(snakeCase(keras3ClassName(className)), &used)
            let key = (scope + [name]).joined(separator: "/")
            out[key] = path
            if modelClassNames.contains(className) {
                walk(entry, scope: scope + [name], prefix: path + "/", into: &out)
            }
        }
    }

    /// The Python class Keras 3 builds for a config's `class_name`: Keras 2's `Model` configs
    /// become `Functional` objects.
    static func keras3ClassName(_ className: String) -> String {
        className == "Model" ? "Functional" : className
    }

    /// `_get_unique_name`: the first is `name`, then `name_1`, `name_2`, ...
    static func uniqueName(_ name: String, _ used: inout [String: Int]) -> String {
        guard let count = used[name] else {
            used[name] = 0
            return name
        }
        used[name] = count + 1
        return "\(name)_\(count + 1)"
    }

    /// keras/src/utils/naming.py `to_snake_case`: drop non-word characters, then
    /// `(.)([A-Z][a-z]+)` -> `\1_\2`, `([a-z])([A-Z])` -> `\1_\2`, lower-cased:
    /// Conv2D -> conv2d, BatchNormalization -> batch_normalization, ReLU -> re_lu.
    public static func snakeCase(_ name: String) -> String {
        var s = replace(name, #"[^\w]+"#, "")
        s = replace(s, #"(.)([A-Z][a-z]+)"#, "$1_$2")
        s = replace(s, #"([a-z])([A-Z])"#, "$1_$2")
        return s.lowercased()
    }

    private static func replace(_ text: String, _ pattern: String, _ template: String) -> String {
        let regex = try! NSRegularExpression(pattern: pattern)
        return regex.stringByReplacingMatches(in: text, range: NSRange(text.startIndex..., in: text), withTemplate: template)
    }

    /// The order Keras 3 stores a layer's variables in (`Layer.save_own_variables`: the layer's
    /// trainable variables, then its non-trainable ones, each in creation order; Conv and Dense
    /// write kernel then bias). Our `WeightSpec` lists are in creation order.
    public static func variableOrder(_ specs: [WeightSpec]) -> [WeightSpec] {
        specs.filter(\.trainableKind) + specs.filter { !$0.trainableKind }
    }
}

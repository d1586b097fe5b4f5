/// Which Keras a written file is meant for.
///
/// `.both` writes the config schema that tf-keras 2.21 and Keras 3.15 both load (checked by
/// fixtures/check_export.py); the few models it cannot express are refused with the reason, and
/// can then be written for one version: `.keras2` (tf-keras / Keras 2 / R `keras`) or `.keras3`
/// (Keras 3 / R `keras3`).
public enum KerasTarget: String, CaseIterable, Sendable, CustomStringConvertible {
    case both
    case keras2 = "2"
    case keras3 = "3"

    public var loadsInKeras2: Bool { self != .keras3 }
    public var loadsInKeras3: Bool { self != .keras2 }

    /// `keras_version` written in the file: the version each schema was checked against. Loaders
    /// only act on the value "1" (Keras 1 weight conversions, reference §4.1); our own reader
    /// takes the schema's meaning of ambiguous names (hard_sigmoid, node numbers) from it.
    public var fileKerasVersion: String { self == .keras3 ? "3.15.1" : "2.21.0" }

    public var description: String {
        switch self {
        case .both: return "Keras 2 and Keras 3"
        case .keras2: return "Keras 2 (tf-keras)"
        case .keras3: return "Keras 3"
        }
    }
}

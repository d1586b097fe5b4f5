// Per-batch accuracy counts and per-epoch averages. Epoch metrics are built from the batches of
// that epoch only (the seed's Keras metric objects were never reset between epochs).
import Foundation

public enum Metrics {
    /// Keras's `categorical_accuracy` / `sparse_categorical_accuracy` as a count: rows whose
    /// argmax of `outputs` (logits or probabilities; the first maximum on ties, as tf.argmax)
    /// equals the label (sparse) or the target row's argmax (distribution). Unlabelled rows
    /// (negative index, all-zero target row) are not counted.
    public static func correctPredictions(outputs: UnsafeBufferPointer<Float>, targets: ClassTargets,
                                          classes: Int) -> (correct: Int, counted: Int) {
        precondition(classes > 0 && outputs.count % classes == 0, "outputs are not [batch, \(classes)]")
        let n = outputs.count / classes
        var correct = 0, counted = 0
        for r in 0..<n {
            let predicted = argmax(outputs.baseAddress! + r * classes, classes)
            let truth: Int?
            switch targets {
            case .sparse(let y):
                precondition(y.count == n, "\(y.count) labels for a batch of \(n)")
                truth = y[r] >= 0 ? y[r] : nil
            case .distribution(let y):
                precondition(y.count == outputs.count, "targets have \(y.count) values, outputs \(outputs.count)")
                truth = y.withUnsafeBufferPointer { t in
                    let row = t.baseAddress! + r * classes
                    return (0..<classes).contains { row[$0] != 0 } ? argmax(row, classes) : nil
                }
            }
            guard let truth else { continue }
            counted += 1
            if truth == predicted { correct += 1 }
        }
        return (correct, counted)
    }

    public static func correctPredictions(outputs: [Float], targets: ClassTargets, classes: Int) -> (correct: Int, counted: Int) {
        outputs.withUnsafeBufferPointer { correctPredictions(outputs: $0, targets: targets, classes: classes) }
    }

    /// Index of the first maximum (NaN never wins).
    static func argmax(_ x: UnsafePointer<Float>, _ n: Int) -> Int {
        var best = 0
        for j in 1..<max(n, 1) where x[j] > x[best] { best = j }
        return best
    }
}

/// Running means over one epoch, as Keras's `Mean` metric reports them: each batch's loss
/// weighted by its number of rows. Start a fresh value (or `reset()`) every epoch.
public struct EpochMetrics: Sendable, Equatable, Codable {
    public private(set) var lossSum = 0.0
    public private(set) var rows = 0
    public private(set) var correct = 0
    public private(set) var counted = 0

    public init() {}

    public mutating func reset() { self = EpochMetrics() }

    /// Adds one batch's mean loss over `rows` rows.
    public mutating func addLoss(_ meanLoss: Float, rows n: Int) {
        lossSum += Double(meanLoss) * Double(n)
        rows += n
    }

    /// Adds one batch's accuracy count.
    public mutating func addAccuracy(correct c: Int, counted n: Int) {
        correct += c
        counted += n
    }

    /// Mean loss per row over the epoch so far (nil before any batch).
    public var loss: Double? { rows > 0 ? lossSum / Double(rows) : nil }
    /// Fraction of counted rows predicted correctly (nil when no row was counted).
    public var accuracy: Double? { counted > 0 ? Double(correct) / Double(counted) : nil }
}

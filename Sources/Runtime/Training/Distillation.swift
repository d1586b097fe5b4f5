// The distillation loss on logits, value and gradient with respect to the student's logits.
//
//     total = alpha * hard + (1 - alpha) * soft
//     hard  = mean over the LABELLED rows of CE(y, softmax(s))           (from_logits=True)
//     soft  = the chosen logit loss over ALL rows (LogitLosses.swift); by default (kd)
//             T^2 * mean over ALL rows of KL(softmax(t / T) || softmax(s / T))
//
// with Keras's KLDivergence: both distributions clipped to [1e-7, 1] before
// sum(p_t * log(p_t / p_s)) (keras.losses.kl_divergence), exactly as the keras.io
// knowledge-distillation example computes its distillation term (it multiplies by T^2 too).
// `alpha` weights the hard-label loss, as in the Keras example and the blog post.
//
// Unlabelled rows (images without a label: a negative class index, or an all-zero target row)
// have only the soft term. The hard term is averaged over the labelled rows, so its scale does
// not depend on how many unlabelled images share the batch, and the soft term over all rows. A
// batch with no labelled row has no hard term: total = (1 - alpha) * soft, i.e. the soft term
// keeps the weight it has in every other batch (with alpha = 1 such a batch contributes nothing).
// When every row is labelled this is exactly the Keras example's loss.
import Foundation

public struct DistillationLoss: Sendable, Equatable {
    /// alpha * hard + (1 - alpha) * soft (hard left out when no row is labelled).
    public var total: Float
    /// Mean cross-entropy over the labelled rows; nil when the batch has none.
    public var hard: Float?
    /// The soft term (kd: T^2 * mean KL over all rows), before the (1 - alpha) weight.
    public var soft: Float
    /// Rows with a label.
    public var labelled: Int
    public var batch: Int
}

extension Losses {
    /// Distillation loss for a batch of student and teacher logits [batch, classes]. `labels`
    /// nil means no row is labelled. Writes d total / d student logits into `gradient` if given.
    ///
    /// `normalizers` (data parallelism): the labelled rows and rows of the whole batch of which this
    /// is a share; the hard and soft terms (and gradients) are then this share's part of the whole
    /// batch's means (summed over the shares, they are the whole batch's), and `total` is left
    /// for the caller to form from the sums.
    public static func distillation(student: UnsafeBufferPointer<Float>, teacher: UnsafeBufferPointer<Float>,
                                    labels: ClassTargets?, classes: Int, alpha: Double, temperature: Double,
                                    softLoss: SoftLoss = .kd, gradient: UnsafeMutableBufferPointer<Float>? = nil,
                                    normalizers: (labelled: Int, rows: Int)? = nil) -> DistillationLoss {
        precondition(classes > 0 && student.count % classes == 0, "student output is not [batch, \(classes)]")
        precondition(teacher.count == student.count, "teacher and student outputs differ in size")
        precondition(temperature > 0 && temperature.isFinite, "temperature must be positive")
        precondition(alpha >= 0 && alpha <= 1, "alpha must be in [0, 1]")
        precondition(gradient == nil || gradient!.count == student.count, "gradient buffer size differs")
        let n = student.count / classes
        let isLabelled = labelledRows(labels, n, classes)
        let labelledCount = isLabelled.lazy.filter { $0 }.count
        guard n > 0 else { return DistillationLoss(total: 0, hard: nil, soft: 0, labelled: 0, batch: 0) }
        let rowsNormalizer = Double(normalizers?.rows ?? n)
        let labelledNormalizer = normalizers?.labelled ?? labelledCount

        // Soft term over every row.
        let soft = softTerm(softLoss, student: student.baseAddress!, teacher: teacher.baseAddress!, rows: n, classes: classes,
                            temperature: temperature,
                            targets: softLoss == .kd ? [] : targetClasses(labels, isLabelled, teacher, n, classes),
                            rowsNormalizer: rowsNormalizer, weight: 1 - alpha, gradient: gradient?.baseAddress)

        // Hard term over the labelled rows.
        var hard: Double? = nil
        if labelledCount > 0 {
            let scale = 1 / Double(labelledNormalizer)
            var sum = 0.0
            var rowGradient = [Float](repeating: 0, count: classes)
            for r in 0..<n where isLabelled[r] {
                let z = student.baseAddress! + r * classes
                rowGradient.withUnsafeMutableBufferPointer { rg in
                    let g = gradient == nil ? nil : rg.baseAddress!
                    switch labels! {
                    case .sparse(let y):
                        sum += sparseLogitRow(z, y[r], classes, g, scale)
                    case .distribution(let y):
                        sum += y.withUnsafeBufferPointer { logitRow(z, $0.baseAddress! + r * classes, classes, g, scale) }
                    }
                }
                if let g = gradient {
                    let row = g.baseAddress! + r * classes
                    for k in 0..<classes { row[k] = Float(Double(row[k]) + alpha * Double(rowGradient[k])) }
                }
            }
            hard = sum * scale
        }
        let total = (hard.map { alpha * $0 } ?? 0) + (1 - alpha) * soft
        return DistillationLoss(total: Float(total), hard: hard.map { Float($0) }, soft: Float(soft),
                                labelled: labelledCount, batch: n)
    }

    /// Array convenience: the loss and d total / d student logits.
    public static func distillation(student: [Float], teacher: [Float], labels: ClassTargets?, classes: Int,
                                    alpha: Double, temperature: Double,
                                    softLoss: SoftLoss = .kd) -> (loss: DistillationLoss, gradient: [Float]) {
        var g = [Float](repeating: 0, count: student.count)
        let loss = student.withUnsafeBufferPointer { s in
            teacher.withUnsafeBufferPointer { t in
                g.withUnsafeMutableBufferPointer {
                    distillation(student: s, teacher: t, labels: labels, classes: classes, alpha: alpha,
                                 temperature: temperature, softLoss: softLoss, gradient: $0)
                }
            }
        }
        return (loss, g)
    }

    /// Each row's class for DKD: the label (the top class of a distribution), or for an unlabelled
    /// row the teacher's top class.
    static func targetClasses(_ labels: ClassTargets?, _ isLabelled: [Bool], _ teacher: UnsafeBufferPointer<Float>,
                              _ n: Int, _ classes: Int) -> [Int] {
        (0..<n).map { r in
            guard isLabelled[r], let labels else { return Metrics.argmax(teacher.baseAddress! + r * classes, classes) }
            switch labels {
            case .sparse(let y): return y[r]
            case .distribution(let y): return y.withUnsafeBufferPointer { Metrics.argmax($0.baseAddress! + r * classes, classes) }
            }
        }
    }

    /// Which rows carry a label: sparse index >= 0, or a target row that is not all zero.
    static func labelledRows(_ labels: ClassTargets?, _ n: Int, _ classes: Int) -> [Bool] {
        switch labels {
        case nil:
            return [Bool](repeating: false, count: n)
        case .sparse(let y)?:
            precondition(y.count == n, "\(y.count) labels for a batch of \(n)")
            precondition(y.allSatisfy { $0 < classes }, "a label is >= \(classes) classes")
            return y.map { $0 >= 0 }
        case .distribution(let y)?:
            precondition(y.count == n * classes, "targets have \(y.count) values, outputs \(n * classes)")
            return (0..<n).map { r in (0..<classes).contains { y[r * classes + $0] != 0 } }
        }
    }
}

/// softmax(x / T) of one row: the division in float32 as Keras does it, the rest in Double.
@inline(__always)
func temperedSoftmax(_ x: UnsafePointer<Float>, _ n: Int, _ temperature: Float, into p: inout [Double]) {
    var m = -Double.infinity
    for j in 0..<n { m = max(m, Double(x[j] / temperature)) }
    var s = 0.0
    for j in 0..<n {
        let e = exp(Double(x[j] / temperature) - m)
        p[j] = e
        s += e
    }
    for j in 0..<n { p[j] /= s }
}

// Categorical cross-entropy as Keras computes it, value and gradient with respect to the model
// output, for a batch laid out [batch, classes] row-major. The reduction is Keras's default
// `sum_over_batch_size`: the per-row losses summed and divided by the batch size.
//
// On probabilities (tf_keras/src/backend.py `categorical_crossentropy`, from_logits=False):
//     q = p / sum(p);  q = clip(q, 1e-7, 1 - 1e-7);  loss = -sum(y * log q)
// With integer labels (`sparse_categorical_crossentropy`) there is no renormalisation; Keras
// takes log(clip(p)) as logits of a softmax, which amounts to
//     loss = -log(clip(p_y)) + log(sum_j clip(p_j))
// On logits (from_logits=True, tf.nn.softmax_cross_entropy_with_logits):
//     loss = -sum(y * log_softmax(z)),   gradient = softmax(z) - y  (TensorFlow's, exact when
//     each target row sums to 1)
// The clip passes gradient where lo <= q <= hi (tf.clip_by_value's gradient), zero outside.
//
// Keras fact: in tf-keras, a model whose output op is a Softmax (model.fit, graph mode) or that
// carries `_keras_logits` is trained with the logits path even when from_logits=False; the
// clipped probability path is what eager code like the seed's `tf$losses$categorical_crossentropy`
// on a model's output gets. Pass logits when the model's softmax can be peeled off.
//
// Arithmetic: the normalisation and the clip run in float32 as TensorFlow does (so the clip
// boundary falls where it does in Keras); logarithms, exponentials and sums in Double.
import Foundation

/// The targets of a batch: one class index per row, or one distribution (one-hot or soft) per
/// row, [batch, classes].
public enum ClassTargets: Sendable, Equatable {
    case sparse([Int])
    case distribution([Float])

    var batch: Int? {
        if case .sparse(let labels) = self { return labels.count }
        return nil
    }
}

/// Keras's `backend.epsilon()`, the probability clip.
let probabilityEpsilon: Float = 1e-7

public enum Losses {
    /// `CategoricalCrossentropy()` (distribution targets) or `SparseCategoricalCrossentropy()`
    /// (sparse targets) on probabilities. Writes d loss / d probabilities into `gradient` if given.
    public static func crossentropy(probabilities p: UnsafeBufferPointer<Float>, targets: ClassTargets, classes: Int,
                                    gradient: UnsafeMutableBufferPointer<Float>? = nil) -> Float {
        let n = checkShapes(p.count, classes, targets, gradient?.count)
        return sumRows(p, n, targets, classes, gradient, scale: 1 / Double(n),
                       distribution: probabilityRow, sparse: sparseProbabilityRow)
    }

    /// The batch's loss: `distribution` or `sparse` on each of the `n` rows, their sum times `scale`.
    private static func sumRows(
        _ x: UnsafeBufferPointer<Float>, _ n: Int, _ targets: ClassTargets, _ classes: Int,
        _ gradient: UnsafeMutableBufferPointer<Float>?, scale: Double,
        distribution: (UnsafePointer<Float>, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>?, Double) -> Double,
        sparse: (UnsafePointer<Float>, Int, Int, UnsafeMutablePointer<Float>?, Double) -> Double
    ) -> Float {
        guard n > 0 else { return 0 }
        var total = 0.0
        for r in 0..<n {
            let row = x.baseAddress! + r * classes
            let g = gradient.map { $0.baseAddress! + r * classes }
            switch targets {
            case .distribution(let y):
                total += y.withUnsafeBufferPointer { distribution(row, $0.baseAddress! + r * classes, classes, g, scale) }
            case .sparse(let labels):
                total += sparse(row, labels[r], classes, g, scale)
            }
        }
        return Float(total * scale)
    }

    /// One row of categorical CE on probabilities: renormalise, clip, -sum(y log q).
    private static func probabilityRow(_ p: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ classes: Int,
                                       _ g: UnsafeMutablePointer<Float>?, _ scale: Double) -> Double {
        let hi: Float = 1 - probabilityEpsilon
        var sum: Float = 0
        for j in 0..<classes { sum += p[j] }
        var loss = 0.0
        for j in 0..<classes {
            let c = min(max(p[j] / sum, probabilityEpsilon), hi)
            loss -= Double(t[j]) * log(Double(c))
        }
        if let g {
            // dL/dq_j = -y_j / q_j inside the clip range, 0 outside; then through
            // q = p / s:  dL/dp_k = (dq_k - sum_j dq_j p_j / s) / s.
            func dq(_ j: Int) -> Double {
                let q = p[j] / sum
                return q >= probabilityEpsilon && q <= hi ? -Double(t[j]) / Double(q) : 0
            }
            let s = Double(sum)
            var dot = 0.0
            for j in 0..<classes { dot += dq(j) * Double(p[j]) }
            for k in 0..<classes { g[k] = Float((dq(k) - dot / s) / s * scale) }
        }
        return loss
    }

    /// One row of sparse CE on probabilities: log(sum_j clip(p_j)) - log(clip(p_y)).
    private static func sparseProbabilityRow(_ p: UnsafePointer<Float>, _ y: Int, _ classes: Int,
                                             _ g: UnsafeMutablePointer<Float>?, _ scale: Double) -> Double {
        let hi: Float = 1 - probabilityEpsilon
        var clipped = 0.0
        for j in 0..<classes { clipped += Double(min(max(p[j], probabilityEpsilon), hi)) }
        let cy = Double(min(max(p[y], probabilityEpsilon), hi))
        if let g {
            // z_j = log c_j:  dL/dz_j = c_j / sum(c) - [j == y];  dz_j/dp_j = 1 / c_j in range.
            for j in 0..<classes {
                guard p[j] >= probabilityEpsilon, p[j] <= hi else { g[j] = 0; continue }
                let c = Double(p[j])
                g[j] = Float((c / clipped - (j == y ? 1 : 0)) / c * scale)
            }
        }
        return log(clipped) - log(cy)
    }

    /// `CategoricalCrossentropy(from_logits=True)` / `SparseCategoricalCrossentropy(from_logits=True)`.
    /// Writes d loss / d logits into `gradient` if given.
    /// `normalizer` (data parallelism): the rows of the whole batch this is a share of; the loss
    /// and gradient are then this share's part of the whole batch's mean.
    public static func crossentropy(logits z: UnsafeBufferPointer<Float>, targets: ClassTargets, classes: Int,
                                    gradient: UnsafeMutableBufferPointer<Float>? = nil, normalizer: Int? = nil) -> Float {
        let n = checkShapes(z.count, classes, targets, gradient?.count)
        return sumRows(z, n, targets, classes, gradient, scale: 1 / Double(normalizer ?? n),
                       distribution: logitRow, sparse: sparseLogitRow)
    }

    /// One row of CE on logits with a target distribution: sum_j y_j (lse - z_j).
    static func logitRow(_ z: UnsafePointer<Float>, _ t: UnsafePointer<Float>, _ classes: Int,
                                 _ g: UnsafeMutablePointer<Float>?, _ scale: Double) -> Double {
        let lse = logSumExp(z, classes)
        var loss = 0.0
        for j in 0..<classes where t[j] != 0 { loss += Double(t[j]) * (lse - Double(z[j])) }
        if let g {
            for j in 0..<classes { g[j] = Float((exp(Double(z[j]) - lse) - Double(t[j])) * scale) }
        }
        return loss
    }

    /// One row of CE on logits with a class index: lse - z_y.
    static func sparseLogitRow(_ z: UnsafePointer<Float>, _ y: Int, _ classes: Int,
                               _ g: UnsafeMutablePointer<Float>?, _ scale: Double) -> Double {
        let lse = logSumExp(z, classes)
        if let g {
            for j in 0..<classes { g[j] = Float((exp(Double(z[j]) - lse) - (j == y ? 1 : 0)) * scale) }
        }
        return lse - Double(z[y])
    }

    /// Array convenience: the loss and its gradient.
    public static func crossentropy(probabilities: [Float], targets: ClassTargets, classes: Int) -> (loss: Float, gradient: [Float]) {
        var g = [Float](repeating: 0, count: probabilities.count)
        let loss = probabilities.withUnsafeBufferPointer { p in
            g.withUnsafeMutableBufferPointer { crossentropy(probabilities: p, targets: targets, classes: classes, gradient: $0) }
        }
        return (loss, g)
    }

    public static func crossentropy(logits: [Float], targets: ClassTargets, classes: Int) -> (loss: Float, gradient: [Float]) {
        var g = [Float](repeating: 0, count: logits.count)
        let loss = logits.withUnsafeBufferPointer { z in
            g.withUnsafeMutableBufferPointer { crossentropy(logits: z, targets: targets, classes: classes, gradient: $0) }
        }
        return (loss, g)
    }

    /// Batch size, after checking that outputs, targets and gradient agree and labels are in range.
    static func checkShapes(_ count: Int, _ classes: Int, _ targets: ClassTargets, _ gradientCount: Int?) -> Int {
        precondition(classes > 0 && count % classes == 0, "output size \(count) is not a multiple of \(classes) classes")
        let n = count / classes
        switch targets {
        case .sparse(let labels):
            precondition(labels.count == n, "\(labels.count) labels for a batch of \(n)")
            precondition(labels.allSatisfy { (0..<classes).contains($0) }, "a label is outside 0..<\(classes)")
        case .distribution(let y):
            precondition(y.count == count, "targets have \(y.count) values, outputs \(count)")
        }
        if let gc = gradientCount { precondition(gc == count, "gradient buffer has \(gc) values, outputs \(count)") }
        return n
    }
}

/// log(sum(exp(x))) of one row, max-shifted, in Double.
@inline(__always)
func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
    var m = -Double.infinity
    for j in 0..<n { m = max(m, Double(x[j])) }
    var s = 0.0
    for j in 0..<n { s += exp(Double(x[j]) - m) }
    return m + log(s)
}

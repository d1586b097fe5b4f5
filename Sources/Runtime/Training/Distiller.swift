import Graph

/// Which of the student's layers train.
public enum TrainableSelection: Sendable, Equatable {
    /// The trainable flags in the student's config (Keras's own behaviour).
    case asConfigured
    /// Every weighted layer before `layer` (in model order, nested models included) frozen, from
    /// it on trainable: R's `unfreeze_weights(model, from = layer)`.
    case unfreezeFrom(String)
    /// Only the top-level layers outside nested models (a classification head on a base).
    case headOnly

    func isTrainable(_ node: GraphNode, in graph: ModelGraph, frozen: Set<String>) throws -> Bool {
        if frozen.contains(node.name) || frozen.contains(node.layerKey) || node.scope.contains(where: frozen.contains) {
            return false
        }
        switch self {
        case .asConfigured:
            return node.trainable
        case .headOnly:
            return node.scope.isEmpty
        case .unfreezeFrom(let name):
            let start = try graph.findLayer(name)
            return node.id >= start
        }
    }
}

public struct DistillConfig: Sendable {
    public var alpha: Double = 0.9
    public var temperature: Double = 3
    public var seed: UInt64 = 0
    public var trainable: TrainableSelection = .asConfigured
    public var frozen: Set<String> = []
    public init() {}
}

/// One optimisation step's numbers.
public struct StepResult: Sendable {
    public var total: Float
    public var hard: Float?
    public var soft: Float?
    public var correct: Int
    public var counted: Int
    public var rows: Int
}

/// Trains a student, with or without a teacher: the student's frozen prefix runs as a fused
/// inference plan, the rest forward and backward in training mode; the teacher (frozen, inference
/// mode) gives logits; the loss is DESIGN.md's distillation loss (alpha weights the hard term) or,
/// without a teacher, cross-entropy on the student's logits.
public final class Distiller {
    public let student: LoadedModel
    public let teacher: InferenceSession?
    let teacherModel: LoadedModel?
    public let params: ParameterStore
    public let optimizer: Optimizer
    public let config: DistillConfig
    private var plans: [Int: TrainingPlan] = [:]
    private let buffers: [ParameterBuffer]

    public init(student: LoadedModel, teacher: LoadedModel?, optimizer: Optimizer, config: DistillConfig) throws {
        self.student = student
        self.config = config
        self.optimizer = optimizer
        let graph = student.graph
        var decisions: [String: Bool] = [:]
        for node in graph.uniqueLayers where !node.weights.isEmpty {
            decisions[node.layerKey] = try config.trainable.isTrainable(node, in: graph, frozen: config.frozen)
        }
        params = ParameterStore(model: student) { node, spec in spec.trainableKind && (decisions[node.layerKey] ?? false) }
        buffers = params.entries.compactMap { e in
            e.gradient.map { ParameterBuffer(name: e.layerKey + "/" + e.spec.name, value: e.values, gradient: $0, count: e.count) }
        }
        guard !buffers.isEmpty else { throw RuntimeError("the student '\(graph.name)' has no trainable weights with these settings") }
        try optimizer.build(buffers)
        self.teacher = try teacher.map { try InferenceSession(model: $0, logits: true) }
        self.teacherModel = teacher
    }

    func plan(batch: Int) throws -> TrainingPlan {
        if let p = plans[batch] { return p }
        let p = try TrainingPlan(model: student, params: params, batch: batch)
        plans[batch] = p
        return p
    }

    /// The teacher as a checkpoint records it (its name and parameter count).
    public var teacherIdentity: String? {
        teacherModel.map { "\($0.graph.name) (\($0.graph.parameterCounts().total) parameters)" }
    }

    /// Classes of the student's output.
    public var classes: Int { student.graph.nodes[student.graph.outputs[0]].outputShape.last ?? 1 }

    /// One step on a batch: `labels` one-hot rows (all zero for an unlabelled image).
    public func step(_ x: Tensor, labels: [Float], index: Int) throws -> StepResult {
        let plan = try self.plan(batch: x.batch)
        let k = classes
        guard labels.count == x.batch * k else {
            throw RuntimeError("labels for \(labels.count / max(1, x.batch)) classes, the student has \(k) outputs")
        }
        let teacherLogits = try teacher.map { try $0.run([x], batchSize: x.batch)[0] }
        plan.forward([x], training: true, seed: config.seed, step: index)
        let logitsNode = plan.split.logits
        let n = plan.nodes[logitsNode].count
        let s = UnsafeBufferPointer(start: plan.values[logitsNode], count: n)
        var gradient = [Float](repeating: 0, count: n)
        let targets = ClassTargets.distribution(labels)
        var result: StepResult
        if let t = teacherLogits {
            guard t.count == n else {
                throw RuntimeError("the teacher gives \(t.itemCount) outputs per image, the student \(k)")
            }
            let loss = t.data.withUnsafeBufferPointer { tp in
                gradient.withUnsafeMutableBufferPointer { g in
                    Losses.distillation(student: s, teacher: tp, labels: targets, classes: k, alpha: config.alpha,
                                        temperature: config.temperature, gradient: g)
                }
            }
            result = StepResult(total: loss.total, hard: loss.hard, soft: loss.soft, correct: 0, counted: 0, rows: x.batch)
        } else {
            let loss = gradient.withUnsafeMutableBufferPointer { g in
                Losses.crossentropy(logits: s, targets: targets, classes: k, gradient: g)
            }
            result = StepResult(total: loss, hard: loss, soft: nil, correct: 0, counted: 0, rows: x.batch)
        }
        guard result.total.isFinite else {
            throw TrainingDiverged(step: index, reason: "the loss became \(result.total)")
        }
        let accuracy = Metrics.correctPredictions(outputs: s, targets: targets, classes: k)
        result.correct = accuracy.correct
        result.counted = accuracy.counted
        params.zeroGradients()
        gradient.withUnsafeBufferPointer { plan.backward(logitsGradient: $0.baseAddress!) }
        if let bad = buffers.first(where: { hasNonFinite($0.gradient, $0.count) }) {
            throw TrainingDiverged(step: index, reason: "the gradient of \(bad.name) became infinite or NaN")
        }
        try optimizer.apply(buffers)
        if let bad = buffers.first(where: { hasNonFinite($0.value, $0.count) }) {
            throw TrainingDiverged(step: index, reason: "the weights exploded (\(bad.name) became infinite or NaN)")
        }
        return result
    }

    /// Loss (cross-entropy on logits against the labels) and accuracy on a batch, inference mode.
    public func evaluate(_ x: Tensor, labels: [Float]) throws -> StepResult {
        let plan = try self.plan(batch: x.batch)
        guard labels.count == x.batch * classes else {
            throw RuntimeError("labels for \(labels.count / max(1, x.batch)) classes, the student has \(classes) outputs")
        }
        plan.forward([x], training: false, seed: config.seed, step: 0)
        let node = plan.split.logits
        let s = UnsafeBufferPointer(start: plan.values[node], count: plan.nodes[node].count)
        let targets = ClassTargets.distribution(labels)
        let loss = Losses.crossentropy(logits: s, targets: targets, classes: classes)
        let accuracy = Metrics.correctPredictions(outputs: s, targets: targets, classes: classes)
        return StepResult(total: loss, hard: loss, soft: nil, correct: accuracy.correct, counted: accuracy.counted, rows: x.batch)
    }

    /// The student with its trained weights, ready to run or to export.
    public func trainedModel() -> LoadedModel {
        var model = student
        model.weights = params.weightStore(like: student.weights)
        return model
    }
}

/// Training stopped because the numbers stopped being numbers: a non-finite loss (checked before
/// the update, so the weights are still the last good ones), gradient or weight.
public struct TrainingDiverged: Error, CustomStringConvertible, Sendable {
    public var step: Int
    public var reason: String
    public var description: String { "\(reason) at step \(step + 1)" }
}

/// Whether any of `count` floats is infinite or NaN (x * 0 is 0 for every finite x, NaN otherwise).
func hasNonFinite(_ p: UnsafePointer<Float>, _ count: Int) -> Bool {
    var acc = SIMD8<Float>(repeating: 0)
    var i = 0
    while i + 8 <= count {
        acc += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self) * 0
        i += 8
    }
    var tail: Float = 0
    while i < count { tail += p[i] * 0; i += 1 }
    return !(acc.sum() + tail).isFinite
}

func hasNonFinite(_ p: UnsafeMutablePointer<Float>, _ count: Int) -> Bool { hasNonFinite(UnsafePointer(p), count) }

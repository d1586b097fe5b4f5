import Foundation
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
    /// The logit loss the teacher's soft targets enter through (kd, dkd or dist).
    public var softLoss: SoftLoss = .kd
    /// The number format of the teachers' matrix products (see `Precision`; the student's are float32).
    public var teacherPrecision: Precision = .float32
    /// Feature distillation: teacher layer / student layer pairs whose weighted losses add to the
    /// logit loss (their teacher layers from the first teacher).
    public var features: [FeaturePair] = []
    /// Off: the student's frozen prefix is always a pass of its own, even where a teacher computes
    /// the same values (`SharedPrefix.swift`; the same bits either way, the reference in tests).
    public var sharePrefix = true
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

/// Trains a student, with or without teachers: the student's frozen prefix runs as a fused
/// inference plan, the rest forward and backward in training mode; the teachers (frozen, inference
/// mode) give logits, and their weighted mean is the soft target; the loss is the distillation
/// loss (alpha weights the hard term; `Losses.distillation`) or, without a teacher, cross-entropy
/// on the student's logits.
public final class Distiller {
    public let student: LoadedModel
    public let teachers: [InferenceSession]
    let teacherModels: [LoadedModel]
    /// Each teacher's weight in the mean of their logits, summing to 1 (the teachers of a cache
    /// when the logits come from one).
    public let teacherWeights: [Double]
    public let params: ParameterStore
    public let optimizer: Optimizer
    public let config: DistillConfig
    private var plans: [Int: TrainingPlan] = [:]
    private let buffers: [ParameterBuffer]
    /// The feature pairs resolved, with their adaptors (nil without `config.features`).
    let features: FeatureDistillation?
    /// The first teacher run for its feature layers (and its logits, last, when `featureLogits`).
    private let featureSession: InferenceSession?
    private let featureLogits: Bool
    /// The ranks of a data-parallel run (a single process by default). Every rank runs `step` on
    /// its share of the same batch; gradients are summed over ranks in one fused buffer.
    public var collective: any Collective = SingleProcess()
    /// Batch normalization statistics over all ranks (`--sync-batchnorm`) instead of per rank.
    public var syncBatchNorm = false
    /// Off: the teachers' passes and the student's frozen prefix run one after the other, each on
    /// all workers, instead of as one job (`teacherLogitsBesidePrefix`; the reference in tests).
    public var sideBySide = true
    /// The teacher whose pass also gives the student's frozen prefix the values at `cut`
    /// (student graph nodes; `SharedPrefix.swift`): its session returns those values first, then
    /// its logits (a teacher session's logits are always its last output).
    let sharedPrefix: (teacher: Int, cut: [Int], teacherNodes: [Int])?
    /// Teacher logits come from a cache (`--teacher-cache`) instead of a teacher model.
    public var teacherCacheIdentity: String?
    private var fused: [Float] = []

    public convenience init(student: LoadedModel, teacher: LoadedModel?, optimizer: Optimizer, config: DistillConfig) throws {
        try self.init(student: student, teachers: teacher.map { [$0] } ?? [], optimizer: optimizer, config: config)
    }

    /// `teacherWeights`: relative weights of the teachers (divided by their sum; equal when nil).
    /// With a teacher cache and no teacher model, give the cache's teacher count as weights.
    public init(student: LoadedModel, teachers: [LoadedModel], teacherWeights: [Double]? = nil, optimizer: Optimizer,
                config: DistillConfig) throws {
        for teacher in teachers { try TrainingJob.refuseSeveralOutputs(teacher, name: "teacher '\(teacher.graph.name)'") }
        self.student = student
        self.config = config
        self.optimizer = optimizer
        let graph = student.graph
        var decisions: [String: Bool] = [:]
        for node in graph.uniqueLayers where !node.weights.isEmpty {
            decisions[node.layerKey] = try config.trainable.isTrainable(node, in: graph, frozen: config.frozen)
        }
        params = ParameterStore(model: student) { node, spec in spec.trainableKind && (decisions[node.layerKey] ?? false) }
        var buffers = params.entries.compactMap { e in
            e.gradient.map { ParameterBuffer(name: e.layerKey + "/" + e.spec.name, value: e.values, gradient: $0, count: e.count) }
        }
        guard !buffers.isEmpty else { throw RuntimeError("the student '\(graph.name)' has no trainable weights with these settings") }
        if config.features.isEmpty {
            (features, featureSession, featureLogits) = (nil, nil, false)
        } else {
            guard let first = teachers.first else {
                throw RuntimeError("feature distillation needs a teacher model to run on every image (a teacher cache holds only its logits)")
            }
            let split = try TrainingLowering.split(graph, params, batch: 1, inputShapes: graph.inputs.map { graph.nodes[$0].outputShape })
            let resolved = try FeatureDistillation(pairs: config.features, student: student, split: split, teacher: first, seed: config.seed)
            // One pass of the first teacher gives its feature layers and its logits, when the
            // model's output can be named as a layer (it can unless the output layer is shared).
            let tg = first.graph
            let outputName = tg.nodes[tg.outputs[0]].layerKey
            let named = (try? tg.findLayer(outputName)) == tg.outputs[0]
            features = resolved
            featureSession = try InferenceSession(model: first, outputLayers: resolved.teacherLayers + (named ? [outputName] : []),
                                                  logits: true, precision: config.teacherPrecision)
            featureLogits = named
            // The adaptors train with the student (after its weights in the optimizer's layout).
            buffers += resolved.adaptors.flatMap(\.buffers)
        }
        self.buffers = buffers
        try optimizer.build(buffers)
        var shared: (teacher: Int, cut: [Int], teacherNodes: [Int])? = nil
        // A student the split refuses is refused by its first step, with the reason; no sharing here.
        if config.sharePrefix && features == nil && config.teacherPrecision == .float32 && !teachers.isEmpty,
           let split = try? TrainingLowering.split(graph, params, batch: 1, inputShapes: graph.inputs.map { graph.nodes[$0].outputShape }),
           !split.boundary.isEmpty {
            let needed = graph.ancestors(of: split.boundary)
            for (t, teacher) in teachers.enumerated() {
                let match = SharedPrefix.matching(student: student, teacher: teacher, within: needed)
                if let cut = SharedPrefix.cut(graph: graph, boundary: split.boundary, needed: needed, shared: match) {
                    shared = (t, cut, cut.map { match[$0]! })
                    break
                }
            }
        }
        sharedPrefix = shared
        self.teachers = try teachers.enumerated().map { t, model in
            if let shared, shared.teacher == t {
                return try InferenceSession(model: model, values: shared.teacherNodes, logits: true, precision: config.teacherPrecision)
            }
            return try InferenceSession(model: model, logits: true, precision: config.teacherPrecision)
        }
        self.teacherModels = teachers
        self.teacherWeights = try Self.normalizedWeights(teacherWeights ?? [Double](repeating: 1, count: teachers.count))
        if !teachers.isEmpty && self.teacherWeights.count != teachers.count {
            throw RuntimeError("\(self.teacherWeights.count) teacher weights for \(teachers.count) teachers")
        }
    }

    func plan(batch: Int) throws -> TrainingPlan {
        if let p = plans[batch] { return p }
        let p = try TrainingPlan(model: student, params: params, batch: batch,
                                 keepValues: Set(features?.matches.map(\.studentNode) ?? []),
                                 sharing: sharedPrefix?.cut ?? [])
        if syncBatchNorm && collective.isDistributed { p.batchNormSync = CollectiveBatchNormSync(collective) }
        plans[batch] = p
        return p
    }

    /// Where steps of `batch` images take the student's frozen prefix from a teacher's pass: the
    /// layers at the cut, and that teacher (0-based); nil where they run the student's own (the
    /// passes not image by image on several workers, or nothing shared), or the plan for `batch`
    /// is not compiled yet (this compiles nothing).
    public func prefixShared(batch: Int) -> (layers: [String], teacher: Int)? {
        let graph = student.graph
        guard let s = sharedPrefix, sideBySide, RuntimeThreads.count > 1, batch > 1, plans[batch]?.shared != nil,
              (try? teachers[s.teacher].microBatch(itemShapes: graph.inputs.map { graph.nodes[$0].outputShape })) == 1
        else { return nil }
        return (s.cut.map { graph.nodes[$0].layerKey }, s.teacher)
    }

    /// Whether a teacher (a model or a cache of its logits) teaches.
    public var distilling: Bool { !teachers.isEmpty || teacherCacheIdentity != nil }

    /// The teachers as a checkpoint records them (name, parameter count, weights' hash; the
    /// weights of several; "in bf16" when they run so, whose soft targets differ from float32's,
    /// so a resume in the other precision is refused as another teacher).
    public var teacherIdentity: String? {
        if let teacherCacheIdentity { return teacherCacheIdentity }
        guard !teacherModels.isEmpty else { return nil }
        return TeacherCache.identity(teachers: teacherModels.map { TeacherCache.identity(of: $0) }, weights: teacherWeights,
                                     precision: config.teacherPrecision)
    }

    /// Weights divided by their sum, after checking they are finite, non-negative and not all zero.
    public static func normalizedWeights(_ weights: [Double]) throws -> [Double] {
        guard weights.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw RuntimeError("teacher weights must be finite and not negative: \(weights)")
        }
        let total = weights.reduce(0, +)
        guard weights.isEmpty || total > 0 else { throw RuntimeError("the teacher weights are all zero") }
        return weights.map { $0 / total }
    }

    /// The weighted mean of several teachers' logits (each [batch, classes], in the order of the
    /// weights), summed in Double. One teacher's logits are returned as they are.
    public static func meanLogits(_ logits: [[Float]], weights: [Double]) -> [Float] {
        precondition(logits.count == weights.count && !logits.isEmpty, "one weight per teacher")
        if logits.count == 1 { return logits[0] }
        let n = logits[0].count
        precondition(logits.allSatisfy { $0.count == n }, "the teachers' outputs differ in size")
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n {
            var v = 0.0
            for (t, w) in zip(logits, weights) { v += w * Double(t[i]) }
            out[i] = Float(v)
        }
        return out
    }

    /// Classes of the student's output.
    public var classes: Int { student.graph.nodes[student.graph.outputs[0]].outputShape.last ?? 1 }

    /// The teacher's logits for a batch: the cached ones when given, else the teacher's; and the
    /// first teacher's feature maps when there are feature pairs.
    func teacherOutputs(_ x: Tensor, cached: [Float]?) throws -> (logits: Tensor?, features: [Tensor]) {
        if let cached {
            guard cached.count == x.batch * classes else {
                throw RuntimeError("the teacher cache gives \(cached.count / max(1, x.batch)) outputs per image, the student \(classes)")
            }
            return (Tensor(shape: [x.batch, classes], data: cached), [])
        }
        guard !teachers.isEmpty else { return (nil, []) }
        var maps: [Tensor] = []
        let outputs = try teachers.enumerated().map { i, teacher -> Tensor in
            guard i == 0, let featureSession, let features else { return try teacher.run([x], batchSize: x.batch).last! }
            let all = try featureSession.run([x], batchSize: x.batch)
            maps = Array(all.prefix(features.teacherLayers.count))
            return featureLogits ? all.last! : try teacher.run([x], batchSize: x.batch).last!
        }
        return (try Self.meanLogits(outputs, weights: teacherWeights), maps)
    }

    /// One teacher's logits as they are, or the weighted mean of several.
    static func meanLogits(_ outputs: [Tensor], weights: [Double]) throws -> Tensor {
        if outputs.count == 1 { return outputs[0] }
        guard outputs.allSatisfy({ $0.itemCount == outputs[0].itemCount }) else {
            throw RuntimeError("the teachers give different numbers of outputs (\(outputs.map(\.itemCount)))")
        }
        return Tensor(shape: outputs[0].shape, data: Self.meanLogits(outputs.map(\.data), weights: weights))
    }

    /// One step on a batch: `labels` one-hot rows (all zero for an unlabelled image).
    ///
    /// Data parallelism: `x` is this rank's share of a batch of `share.global` rows starting at row
    /// `share.offset`. One sum over ranks gives the whole batch's row and labelled-row counts; each
    /// rank's loss terms and logits gradients are then its rows' part of the whole batch's means
    /// (the per-row arithmetic of one process on the whole batch), so the sum over ranks of the
    /// parameter gradients is the whole batch's gradient. That sum is one fused buffer of every
    /// trainable gradient (Horovod's tensor fusion); every rank applies the same update, and the
    /// figures returned are the whole batch's. A single process skips the sums.
    /// When set, each step adds the time of its phases here (`bench --train --profile`).
    public var phases: PhaseTimes?

    public func step(_ x: Tensor, labels: [Float], index: Int, teacherLogits cached: [Float]? = nil,
                     share: (offset: Int, global: Int)? = nil) throws -> StepResult {
        let k = classes, rows = x.batch
        guard labels.count == rows * k else {
            throw RuntimeError("labels for \(labels.count / max(1, rows)) classes, the student has \(k) outputs")
        }
        let targets = ClassTargets.distribution(labels)
        let distributed = collective.isDistributed
        var counts = [Double(Losses.labelledRows(targets, rows, k).filter { $0 }.count), Double(rows)]
        if distributed { try collective.allReduceSum(&counts) }
        let labelled = Int(counts[0]), total = Int(counts[1])
        var gradient = [Float](repeating: 0, count: rows * k)
        // This share's figures; [hard part, soft part, cross-entropy part, correct, counted,
        // weighted feature losses] to sum.
        var local = StepResult(total: 0, hard: nil, soft: nil, correct: 0, counted: 0, rows: rows)
        var stats = [Double](repeating: 0, count: 6)
        var featureGradients: [Int: [Float]] = [:]
        var plan: TrainingPlan? = nil
        if rows > 0 {
            let p = try self.plan(batch: rows)
            plan = p
            var clock = phases.map { _ in DispatchTimeNanos.now() }
            let teacherLogits: Tensor?, teacherMaps: [Tensor]
            p.beginForward(training: true, rowOffset: share?.offset ?? 0)
            if cached == nil, let logits = try teacherLogitsBesidePrefix(x, plan: p, seed: config.seed, step: index) {
                (teacherLogits, teacherMaps) = (logits, [])
                phases?.lap("teachers + frozen prefix", &clock)
                p.forwardTrainable(training: true, seed: config.seed, step: index)
                phases?.lap("student trainable forward", &clock)
            } else {
                (teacherLogits, teacherMaps) = try self.teacherOutputs(x, cached: cached)
                phases?.lap("teacher forward", &clock)
                p.forward([x], training: true, seed: config.seed, step: index, rowOffset: share?.offset ?? 0, phases: &phases)
            }
            try p.throwBatchNormSyncFailure()
            let node = p.split.logits
            let s = UnsafeBufferPointer(start: p.values[node], count: rows * k)
            if let t = teacherLogits {
                guard t.count == rows * k else {
                    throw RuntimeError("the teacher gives \(t.itemCount) outputs per image, the student \(k)")
                }
                let loss: DistillationLoss
                if distributed && config.softLoss.couplesRows {
                    loss = try wholeBatchLoss(student: Array(s), teacher: t.data, labels: labels, share: share,
                                              gradient: &gradient)
                } else {
                    loss = t.data.withUnsafeBufferPointer { tp in
                        gradient.withUnsafeMutableBufferPointer { g in
                            Losses.distillation(student: s, teacher: tp, labels: targets, classes: k, alpha: config.alpha,
                                                temperature: config.temperature, softLoss: config.softLoss, gradient: g,
                                                normalizers: (labelled, total))
                        }
                    }
                }
                (local.total, local.hard, local.soft) = (loss.total, loss.hard, loss.soft)
                stats[0] = Double(loss.hard ?? 0)
                stats[1] = Double(loss.soft)
            } else {
                let loss = gradient.withUnsafeMutableBufferPointer { g in
                    Losses.crossentropy(logits: s, targets: targets, classes: k, gradient: g, normalizer: total)
                }
                (local.total, local.hard) = (loss, loss)
                stats[2] = Double(loss)
            }
            if let features {
                clock = phases.map { _ in DispatchTimeNanos.now() }
                let (loss, gradients) = features.step(plan: p, teacherMaps: teacherMaps, rows: rows, totalRows: total)
                featureGradients = gradients
                local.total += Float(loss)
                stats[5] = loss
                phases?.lap("feature losses", &clock)
            }
            let accuracy = Metrics.correctPredictions(outputs: s, targets: targets, classes: k)
            (local.correct, local.counted) = (accuracy.correct, accuracy.counted)
        } else if distributed && distilling && config.softLoss.couplesRows {
            // This rank has no rows but must still take part in gathering the batch.
            _ = try wholeBatchLoss(student: [], teacher: [], labels: [], share: share, gradient: &gradient)
        }
        // A rank without rows still zeroes its adaptors' gradients before the sum over ranks.
        if rows == 0, let features { features.zeroGradients() }
        var result = local
        if distributed {
            stats[3] = Double(local.correct)
            stats[4] = Double(local.counted)
            try collective.allReduceSum(&stats)
            if distilling {
                let hard = labelled > 0 ? stats[0] : nil
                let loss = hard.map { config.alpha * $0 + (1 - config.alpha) * stats[1] } ?? (1 - config.alpha) * stats[1]
                result = StepResult(total: Float(loss), hard: hard.map(Float.init), soft: Float(stats[1]), correct: 0,
                                    counted: 0, rows: total)
            } else {
                result = StepResult(total: Float(stats[2]), hard: Float(stats[2]), soft: nil, correct: 0, counted: 0, rows: total)
            }
            result.total += Float(stats[5])
            result.correct = Int(stats[3])
            result.counted = Int(stats[4])
        }
        guard result.total.isFinite else { throw TrainingDiverged(step: index, reason: "the loss became \(result.total)") }
        var clock = phases.map { _ in DispatchTimeNanos.now() }
        if let plan {
            let written = gradient.withUnsafeBufferPointer {
                plan.backward(logitsGradient: $0.baseAddress!, extra: featureGradients)
            }
            params.zeroGradients(except: written)
            try plan.throwBatchNormSyncFailure()
        } else {
            params.zeroGradients()
        }
        phases?.lap("student backward", &clock)
        if distributed { try sumGradientsOverRanks() }
        try applyUpdate(step: index)
        phases?.lap("optimizer update", &clock)
        return result
    }

    /// A loss that couples the rows (DIST), under data parallelism: every rank gathers the whole
    /// batch's student and teacher logits and labels, computes the loss and gradient of the whole
    /// batch as one process would, and keeps its own rows' gradient. The loss terms returned are
    /// this rank's share (rows / batch) of the whole batch's, so that their sum over ranks is it.
    private func wholeBatchLoss(student: [Float], teacher: [Float], labels: [Float], share: (offset: Int, global: Int)?,
                                gradient: inout [Float]) throws -> DistillationLoss {
        guard let share else { throw RuntimeError("a data-parallel step needs its share of the batch (offset and size)") }
        let k = classes, n = share.global, rows = student.count / k
        var all = [Double](repeating: 0, count: 3 * n * k)
        for (part, values) in [student, teacher, labels].enumerated() {
            for (i, v) in values.enumerated() { all[part * n * k + share.offset * k + i] = Double(v) }
        }
        try collective.allReduceSum(&all)
        let whole = (0..<3).map { part in all[part * n * k ..< (part + 1) * n * k].map { Float($0) } }
        let (loss, g) = Losses.distillation(student: whole[0], teacher: whole[1], labels: .distribution(whole[2]),
                                            classes: k, alpha: config.alpha, temperature: config.temperature,
                                            softLoss: config.softLoss)
        for i in 0..<rows * k { gradient[i] = g[share.offset * k + i] }
        let part = Double(rows) / Double(max(1, n))
        return DistillationLoss(total: Float(Double(loss.total) * part), hard: loss.hard.map { Float(Double($0) * part) },
                                soft: Float(Double(loss.soft) * part), labelled: loss.labelled, batch: rows)
    }

    /// Every trainable gradient summed over the ranks in one fused buffer (Horovod's tensor fusion).
    private func sumGradientsOverRanks() throws {
        let count = buffers.reduce(0) { $0 + $1.count }
        if fused.count != count { fused = [Float](repeating: 0, count: count) }
        try fused.withUnsafeMutableBufferPointer { f in
            var at = 0
            for b in buffers { (f.baseAddress! + at).update(from: b.gradient, count: b.count); at += b.count }
            try collective.allReduceSum(f.baseAddress!, count: count)
            at = 0
            for b in buffers { UnsafeMutablePointer(mutating: b.gradient).update(from: f.baseAddress! + at, count: b.count); at += b.count }
        }
    }

    /// The optimizer's update from the gradients in place, refusing non-finite gradients before it
    /// (the weights are then still the last good ones) and non-finite weights after it (which the
    /// optimizer's pass notes as it stores them).
    private func applyUpdate(step index: Int) throws {
        if !optimizer.isBuilt { try optimizer.build(buffers) }
        if let bad = optimizer.firstNonFiniteGradient(buffers).map({ buffers[$0] }) {
            throw TrainingDiverged(step: index, reason: "the gradient of \(bad.name) became infinite or NaN")
        }
        try optimizer.apply(buffers)
        if let bad = optimizer.firstNonFiniteValue.map({ buffers[$0] }) {
            throw TrainingDiverged(step: index, reason: "the weights exploded (\(bad.name) became infinite or NaN)")
        }
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

    /// The feature adaptors' weights (not part of the student; a checkpoint carries them).
    public var featureAdaptorState: [NamedArray] { features?.state ?? [] }

    /// Puts back the feature adaptors' weights of a checkpoint of this run.
    public func restoreFeatureAdaptors(_ arrays: [NamedArray]) throws {
        if let features { try features.restore(arrays) } else if !arrays.isEmpty {
            throw RuntimeError("the checkpoint has feature adaptors, this run has no feature pairs")
        }
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

/// Synchronised batch norm over the ranks of a collective.
final class CollectiveBatchNormSync: BatchNormSync {
    let collective: any Collective
    init(_ collective: any Collective) { self.collective = collective }

    func combine(mean: UnsafeMutablePointer<Float>, variance: UnsafeMutablePointer<Float>, channels C: Int, rows: Int) -> Int {
        // Global mean = sum(n_r mean_r) / N, then global variance = sum(n_r (var_r + (mean_r - mean)^2)) / N.
        var first = [Double](repeating: 0, count: C + 1)
        for c in 0..<C { first[c] = Double(rows) * Double(mean[c]) }
        first[C] = Double(rows)
        sum(&first)
        let n = max(1, first[C])
        var second = [Double](repeating: 0, count: C)
        for c in 0..<C {
            let m = first[c] / n, d = Double(mean[c]) - m
            second[c] = Double(rows) * (Double(variance[c]) + d * d)
        }
        sum(&second)
        for c in 0..<C {
            mean[c] = Float(first[c] / n)
            variance[c] = Float(second[c] / n)
        }
        return Int(first[C])
    }

    /// The first sum over ranks that failed. The kernels calling `combine` cannot throw, so the
    /// step throws it after the pass (the caller decides how to end the ranks).
    private(set) var failure: Error?

    func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {
        guard failure == nil else { return }
        do { try collective.allReduceSum(values, count: count) } catch { failure = error }
    }

    private func sum(_ values: inout [Double]) {
        let n = values.count
        values.withUnsafeMutableBufferPointer { sum($0.baseAddress!, count: n) }
    }
}

/// Seconds spent per phase of the distillation steps timed so far (in first-seen order).
public struct PhaseTimes: Sendable {
    public private(set) var order: [String] = []
    public private(set) var seconds: [String: Double] = [:]
    public init() {}

    /// Adds the time since `clock` to `phase` and restarts the clock.
    mutating func lap(_ phase: String, _ clock: inout UInt64?) {
        guard let start = clock else { return }
        let now = DispatchTimeNanos.now()
        if seconds[phase] == nil { order.append(phase) }
        seconds[phase, default: 0] += Double(now - start) / 1e9
        clock = now
    }
}

extension TrainingPlan {
    /// A batch-normalization sum over ranks that failed during the last pass, thrown.
    func throwBatchNormSyncFailure() throws {
        if let sync = batchNormSync as? CollectiveBatchNormSync, let failure = sync.failure { throw failure }
    }
}

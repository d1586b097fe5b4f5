// The optimizer base: parameter layout, slot storage, learning rate, gradient clipping, weight
// decay, saved state, and the parallel element-wise pass that Adam, SGD and RMSprop plug a
// per-element kernel into.
//
// What one `apply` does, in tf-keras 2.21's order (tf_keras/src/optimizers/optimizer.py,
// `apply_gradients`): read the learning rate (a schedule is evaluated at `iterations`, the
// number of steps already taken), clip the gradients, apply weight decay
// (`x -= x * wd * lr`), run the optimizer's update on every element, then `iterations += 1`.
//
// Hyperparameters are taken as Double, like the Python floats Keras receives, and turned into
// float32 the way TensorFlow does: derived constants such as `1 - beta_1` are computed in
// Double first (Python) and rounded once (when the op converts them to a float32 tensor).
//
// Layout: every parameter's elements are numbered consecutively in the order given at `build`
// (parameter 0's elements, then parameter 1's...). Each slot (Adam's `m`, `v`...) is one buffer
// over that numbering, so the update is one flat loop split across workers, with no per-tensor
// dispatch for the hundreds of tiny bias/BN tensors of a real model, and no allocation per step.
import Foundation

/// One trainable tensor as the optimizer sees it: a name (for saved state), its values (updated
/// in place) and its gradient (read only), both `count` floats. The caller owns the memory and
/// must keep it alive and unaliased while `apply` runs.
public struct ParameterBuffer: @unchecked Sendable {
    public let name: String
    public let value: UnsafeMutablePointer<Float>
    public let gradient: UnsafePointer<Float>
    public let count: Int

    public init(name: String, value: UnsafeMutablePointer<Float>, gradient: UnsafePointer<Float>, count: Int) {
        self.name = name
        self.value = value
        self.gradient = gradient
        self.count = count
    }
}

/// Where tf-keras 2.21 and Keras 3 round differently. Only a few places differ (RMSprop's
/// increment, global-norm clipping's `1 / clip_norm`, ReduceLROnPlateau's arithmetic); each is
/// documented where it is used.
public enum KerasFlavor: String, Sendable, Codable, CaseIterable {
    case tfKeras2 = "tf-keras"
    case keras3 = "keras3"
}

/// Keras's gradient clipping options. Keras applies at most one, with this precedence:
/// `clipnorm`, then `global_clipnorm`, then `clipvalue` (so one enum case each).
public enum GradientClipping: Sendable, Equatable {
    case none
    /// `clipnorm`: each gradient tensor g becomes g * c / max(||g||, c).
    case norm(Double)
    /// `global_clipnorm`: every gradient is scaled by c / max(global norm, c).
    case globalNorm(Double)
    /// `clipvalue`: every element is clamped to [-c, c].
    case value(Double)
}

/// The learning rate: a fixed value (Keras's `learning_rate` float; settable, e.g. by
/// ReduceLROnPlateau) or a schedule evaluated at each step.
public enum LearningRate: Sendable {
    case constant(Double)
    case schedule(any LearningRateSchedule)
}

public struct OptimizerError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}

/// A float array with a name, e.g. `"dense/kernel/m"`.
public struct NamedArray: Sendable, Equatable, Codable {
    public var name: String
    public var values: [Float]
    public init(name: String, values: [Float]) {
        self.name = name
        self.values = values
    }
}

/// Everything needed to continue training exactly where it stopped: the step counter, the
/// current (settable) learning rate, and every slot array, named `<parameter>/<slot>`, in
/// parameter order then slot order.
public struct OptimizerState: Sendable, Equatable, Codable {
    public var optimizer: String
    public var iterations: Int
    public var learningRate: Float
    public var slots: [NamedArray]

    public init(optimizer: String, iterations: Int, learningRate: Float, slots: [NamedArray]) {
        self.optimizer = optimizer
        self.iterations = iterations
        self.learningRate = learningRate
        self.slots = slots
    }
}

/// Shared machinery; use `Adam`, `SGD` or `RMSprop`.
public class Optimizer: @unchecked Sendable {
    /// Keras's name for the optimizer ("adam", "sgd", "rmsprop"), stored in saved state.
    public let kind: String
    /// Steps applied so far (Keras's `optimizer.iterations`).
    public private(set) var iterations = 0
    public let clipping: GradientClipping
    /// Decoupled weight decay (Keras's `weight_decay`), or nil.
    public let weightDecay: Double?
    /// Parameters whose name contains one of these strings get no weight decay (Keras's
    /// `exclude_from_weight_decay(var_names=...)`, which matches them with `re.search`).
    public let weightDecayExcludes: [String]
    public let flavor: KerasFlavor

    private var fixedRate: Float
    private let schedule: (any LearningRateSchedule)?

    // Layout, fixed at `build`.
    public private(set) var parameterNames: [String] = []
    public private(set) var parameterCounts: [Int] = []
    private var offsets: [Int] = [0]
    private var decays: [Bool] = []
    private var slotStorage: [UnsafeMutablePointer<Float>] = []
    /// Per-parameter partial sums of squared gradients, one row per worker (clipping norms).
    private var partialSums: UnsafeMutablePointer<Double>?
    private var partialRows = 0
    private var clipScales: [Float] = []
    /// One row per worker, per parameter: whether the last `run` left an infinite or NaN element
    /// in the worker's share of it; then the same rows again for whether the last
    /// `firstNonFiniteGradient` found one in its gradient. Per worker because a parameter can span
    /// two workers' chunks: one shared flag would be written by both at once.
    private var nonFinite: UnsafeMutablePointer<Bool>?
    private var norms: [Double] = []

    init(kind: String, learningRate: LearningRate, clipping: GradientClipping, weightDecay: Double?,
         weightDecayExcludes: [String], flavor: KerasFlavor) {
        self.kind = kind
        self.clipping = clipping
        self.weightDecay = weightDecay
        self.weightDecayExcludes = weightDecayExcludes
        self.flavor = flavor
        switch learningRate {
        case .constant(let v): fixedRate = Float(v); schedule = nil
        case .schedule(let s): fixedRate = s.learningRate(at: 0); schedule = s
        }
    }

    deinit {
        for p in slotStorage { p.deallocate() }
        partialSums?.deallocate()
        nonFinite?.deallocate()
    }

    /// The slot names of this optimizer as configured (e.g. Adam: m, v, and vhat with AMSGrad).
    var slotNames: [String] { [] }

    /// Whether `build` has fixed the parameter layout.
    public var isBuilt: Bool { !parameterNames.isEmpty }
    /// Total number of parameter elements.
    public var elementCount: Int { offsets.last ?? 0 }

    // MARK: learning rate

    /// The learning rate the next `apply` will use (the schedule at `iterations`, or the value).
    public var learningRate: Float {
        schedule.map { $0.learningRate(at: iterations) } ?? fixedRate
    }

    /// Sets the learning rate, as Keras's `optimizer.learning_rate = x` (float32). Like Keras, an
    /// optimizer built with a schedule refuses.
    public func setLearningRate(_ value: Float) throws {
        guard schedule == nil else {
            throw OptimizerError("this optimizer was created with a learning-rate schedule; its learning rate is not settable")
        }
        fixedRate = value
    }

    // MARK: layout and state

    /// Fixes the parameter layout (names and sizes, in order) and allocates zeroed slots. Called
    /// by the first `apply` if not called before; call it yourself before `restore`.
    public func build(_ layout: [(name: String, count: Int)]) throws {
        guard !isBuilt else {
            guard layout.map(\.name) == parameterNames, layout.map(\.count) == parameterCounts else {
                throw OptimizerError("optimizer already built for a different parameter list")
            }
            return
        }
        guard !layout.isEmpty else { throw OptimizerError("no parameters to optimise") }
        guard Set(layout.map(\.name)).count == layout.count else {
            throw OptimizerError("parameter names must be unique")
        }
        parameterNames = layout.map(\.name)
        parameterCounts = layout.map(\.count)
        offsets = [0]
        for c in parameterCounts {
            guard c >= 0 else { throw OptimizerError("negative parameter size") }
            offsets.append(offsets.last! + c)
        }
        decays = parameterNames.map { name in !weightDecayExcludes.contains { name.contains($0) } }
        let total = offsets.last!
        slotStorage = slotNames.map { _ in
            let p = allocateAlignedFloats(max(total, 1))
            p.initialize(repeating: 0, count: max(total, 1))
            return p
        }
        partialRows = max(1, RuntimeThreads.count)
        partialSums = .allocate(capacity: partialRows * parameterCounts.count)
        clipScales = [Float](repeating: 1, count: parameterCounts.count)
        nonFinite = .allocate(capacity: 2 * partialRows * parameterCounts.count)
        nonFinite!.initialize(repeating: false, count: 2 * partialRows * parameterCounts.count)
        norms = [Double](repeating: 0, count: parameterCounts.count)
    }

    public func build(_ parameters: [ParameterBuffer]) throws {
        try build(parameters.map { (name: $0.name, count: $0.count) })
    }

    /// Pointer to slot `slot` (index into `slotNames`) over the flat element numbering.
    func slot(_ slot: Int) -> UnsafeMutablePointer<Float> { slotStorage[slot] }

    /// A copy of the step counter, learning rate and every slot.
    public func state() -> OptimizerState {
        var arrays: [NamedArray] = []
        for (p, name) in parameterNames.enumerated() {
            for (s, slotName) in slotNames.enumerated() {
                let base = slotStorage[s] + offsets[p]
                arrays.append(NamedArray(name: "\(name)/\(slotName)",
                                         values: Array(UnsafeBufferPointer(start: base, count: parameterCounts[p]))))
            }
        }
        return OptimizerState(optimizer: kind, iterations: iterations, learningRate: learningRate, slots: arrays)
    }

    /// Restores a `state()`; the optimizer must be built with the same parameters. Every slot
    /// must be present with the right size; nothing is changed when something does not match.
    public func restore(_ state: OptimizerState) throws {
        guard isBuilt else { throw OptimizerError("build the optimizer with its parameters before restoring its state") }
        guard state.optimizer == kind else {
            throw OptimizerError("saved optimizer state is for '\(state.optimizer)', not '\(kind)'")
        }
        guard state.iterations >= 0 else { throw OptimizerError("negative iteration count in saved state") }
        var byName: [String: [Float]] = [:]
        for a in state.slots { byName[a.name] = a.values }
        var expected = 0
        for (p, name) in parameterNames.enumerated() {
            for slotName in slotNames {
                let key = "\(name)/\(slotName)"
                guard let values = byName[key] else { throw OptimizerError("saved optimizer state has no '\(key)'") }
                guard values.count == parameterCounts[p] else {
                    throw OptimizerError("saved '\(key)' has \(values.count) values, the parameter has \(parameterCounts[p])")
                }
                expected += 1
            }
        }
        guard expected == state.slots.count else {
            throw OptimizerError("saved optimizer state has \(state.slots.count) arrays, expected \(expected)")
        }
        for (p, name) in parameterNames.enumerated() {
            for (s, slotName) in slotNames.enumerated() {
                byName["\(name)/\(slotName)"]!.withUnsafeBufferPointer {
                    (slotStorage[s] + offsets[p]).update(from: $0.baseAddress!, count: parameterCounts[p])
                }
            }
        }
        iterations = state.iterations
        if schedule == nil { fixedRate = state.learningRate }
    }

    // MARK: the step

    /// Applies one update to every parameter (Keras's `apply_gradients`).
    public func apply(_ parameters: [ParameterBuffer]) throws {
        if !isBuilt { try build(parameters) }
        guard parameters.count == parameterNames.count else {
            throw OptimizerError("optimizer built for \(parameterNames.count) parameters, given \(parameters.count)")
        }
        for (p, param) in parameters.enumerated() where param.name != parameterNames[p] || param.count != parameterCounts[p] {
            throw OptimizerError("parameter \(p) is '\(param.name)' (\(param.count)), the optimizer was built for '\(parameterNames[p])' (\(parameterCounts[p]))")
        }
        let lr = learningRate
        let clip = prepareClipping(parameters)
        update(parameters, learningRate: lr, clip: clip)
        iterations += 1
    }

    /// The first parameter (in build order) to which the last `apply` left an infinite or NaN
    /// value, or nil. Checked as the update stores the values, so no second pass reads them.
    public var firstNonFiniteValue: Int? {
        guard let flags = nonFinite else { return nil }
        return firstFlagged(flags)
    }

    /// The first parameter any worker's row of `flags` marks.
    private func firstFlagged(_ flags: UnsafePointer<Bool>) -> Int? {
        let np = parameterCounts.count
        return (0..<np).first { p in (0..<partialRows).contains { flags[$0 * np + p] } }
    }

    /// Workers of the optimizer's passes: at most one per row of the per-worker buffers.
    private var passThreads: Int { min(RuntimeThreads.count, partialRows) }

    /// The first of `parameters` (laid out as built) whose gradient has an infinite or NaN
    /// element, or nil; the elements shared among the workers as in the update's pass (on one
    /// thread, this read of every gradient left the other worker idle for about 1% of an unfrozen
    /// EfficientNetB0 step).
    public func firstNonFiniteGradient(_ parameters: [ParameterBuffer]) -> Int? {
        guard isBuilt, parameters.count == parameterCounts.count,
              parameters.indices.allSatisfy({ parameters[$0].count == parameterCounts[$0] }) else {
            return parameters.firstIndex { hasNonFinite($0.gradient, $0.count) }
        }
        let np = parameterCounts.count
        let flags = nonFinite! + partialRows * np
        flags.update(repeating: false, count: partialRows * np)
        parameters.withUnsafeBufferPointer { params in
            parallelFor(elementCount, minChunk: 1 << 15, threads: passThreads) { w, range in
                forEachSegment(range) { p, lo, hi in
                    if hasNonFinite(params[p].gradient + (lo - offsets[p]), hi - lo) { flags[w * np + p] = true }
                }
            }
        }
        return firstFlagged(flags)
    }

    /// Subclasses run their kernel through `run`.
    func update(_ parameters: [ParameterBuffer], learningRate: Float, clip: ClipMode) {
        preconditionFailure("\(type(of: self)) does not override update")
    }

    /// How the gradients are transformed this step (after the norms were measured).
    enum ClipMode { case none, perParameter, scale(Float), clamp(Float) }

    /// The one parallel pass: splits all elements over the workers; each worker walks the
    /// parameters its range covers and runs `kernel` on every element, after weight decay.
    func run<K: UpdateKernel>(_ parameters: [ParameterBuffer], learningRate lr: Float, clip: ClipMode, _ kernel: K) {
        let wd = weightDecay.map { Float($0) } ?? 0
        let useDecay = weightDecay != nil
        let np = parameterCounts.count
        let flags = nonFinite!
        flags.update(repeating: false, count: partialRows * np)
        parameters.withUnsafeBufferPointer { params in
            parallelFor(elementCount, minChunk: 1 << 15, threads: passThreads) { w, range in
                forEachSegment(range) { p, lo, hi in
                    let base = offsets[p]
                    let x = params[p].value - base, g = params[p].gradient - base
                    let decay = useDecay && decays[p]
                    let finite: Bool
                    switch clip {
                    case .none: finite = loop(kernel, x, g, lo, hi, decay, wd, lr, KeepGradient())
                    case .perParameter: finite = loop(kernel, x, g, lo, hi, decay, wd, lr, ClipGradientNorm(c: clipNormValue, d: clipScales[p]))
                    case .scale(let s): finite = loop(kernel, x, g, lo, hi, decay, wd, lr, ScaleGradient(s: s))
                    case .clamp(let c): finite = loop(kernel, x, g, lo, hi, decay, wd, lr, ClampGradient(c: c))
                    }
                    if !finite { flags[w * np + p] = true }
                }
            }
        }
    }

    /// Updates elements lo..<hi; returns whether every new value is finite (x * 0 is 0 for every
    /// finite x, NaN otherwise: summed as the values are stored).
    @inline(__always)
    private func loop<K: UpdateKernel, M: GradientMap>(_ kernel: K, _ x: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>,
                                                      _ lo: Int, _ hi: Int, _ decay: Bool, _ wd: Float, _ lr: Float, _ map: M) -> Bool {
        var i = lo
        var acc = Vec(repeating: 0), tail: Float = 0
        if decay {
            while i + 8 <= hi { acc += step(kernel, x, g, i, wd, lr, map, Vec.self, decay: true) * 0; i += 8 }
            while i < hi { tail += step(kernel, x, g, i, wd, lr, map, Float.self, decay: true) * 0; i += 1 }
        } else {
            while i + 8 <= hi { acc += step(kernel, x, g, i, wd, lr, map, Vec.self, decay: false) * 0; i += 8 }
            while i < hi { tail += step(kernel, x, g, i, wd, lr, map, Float.self, decay: false) * 0; i += 1 }
        }
        return (acc.sum() + tail).isFinite
    }

    @inline(__always)
    private func step<K: UpdateKernel, M: GradientMap, V: Lanes>(_ kernel: K, _ x: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>,
                                                                _ i: Int, _ wd: Float, _ lr: Float, _ map: M, _ lanes: V.Type, decay: Bool) -> V {
        var v = V.load(x + i)
        if decay { v = v - v * V(splat: wd) * V(splat: lr) }  // Keras: variable.assign_sub(variable * wd * lr)
        let new = kernel.update(v, map(V.load(g + i)), i)
        new.store(x + i)
        return new
    }

    /// Calls `body(parameter, lo, hi)` for each parameter's share of the flat `range`.
    @inline(__always)
    private func forEachSegment(_ range: Range<Int>, _ body: (Int, Int, Int) -> Void) {
        // First parameter whose end is past range.lowerBound (binary search over the offsets).
        var lo = 0, hi = parameterCounts.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if offsets[mid + 1] <= range.lowerBound { lo = mid + 1 } else { hi = mid }
        }
        var p = lo
        var start = range.lowerBound
        while start < range.upperBound {
            let end = min(offsets[p + 1], range.upperBound)
            if end > start { body(p, start, end) }
            start = end
            p += 1
        }
    }

    // MARK: clipping

    private var clipNormValue: Float {
        if case .norm(let c) = clipping { return Float(max(c, 0)) }
        return 0
    }

    /// Measures the gradient norms the clipping option needs and says how to clip.
    private func prepareClipping(_ parameters: [ParameterBuffer]) -> ClipMode {
        switch clipping {
        case .none:
            return .none
        case .value(let c):
            guard c > 0 else { return .none }
            return .clamp(Float(c))
        case .norm(let c):
            guard c > 0 else { return .none }
            // tf.clip_by_norm: l2norm = sqrt(sum(g*g)) (0 stays 0); g * c / max(l2norm, c).
            squaredNorms(parameters)
            let cf = Float(c)
            for p in 0..<norms.count { clipScales[p] = max(Float(norms[p]).squareRoot(), cf) }
            return .perParameter
        case .globalNorm(let c):
            guard c > 0 else { return .none }
            squaredNorms(parameters)
            let total = norms.reduce(0, +)
            let norm = Float(total.squareRoot())
            let cf = Float(c)
            // tf.clip_by_global_norm: scale = c * min(1 / norm, 1 / c) + (norm - norm); Keras 3
            // computes its `1 / c` in Python (Double) before the float32 op.
            let inverseClip = flavor == .keras3 ? Float(1 / c) : 1 / cf
            let scale = cf * min(1 / norm, inverseClip) + (norm - norm)
            return .scale(scale)
        }
    }

    /// Sum of squared gradient elements per parameter into `norms` (Double accumulation, parallel;
    /// TensorFlow's float32 reduction order depends on the tensor size and CPU and is not copied).
    private func squaredNorms(_ parameters: [ParameterBuffer]) {
        let np = parameterCounts.count
        let sums = partialSums!
        sums.initialize(repeating: 0, count: partialRows * np)
        parameters.withUnsafeBufferPointer { params in
            parallelFor(elementCount, minChunk: 1 << 15, threads: passThreads) { w, range in
                let row = sums + w * np
                forEachSegment(range) { p, lo, hi in
                    let g = params[p].gradient - offsets[p]
                    var s = 0.0
                    for i in lo..<hi { let v = Double(g[i]); s += v * v }
                    row[p] += s
                }
            }
        }
        for p in 0..<np { norms[p] = 0 }
        for w in 0..<partialRows { for p in 0..<np { norms[p] += sums[w * np + p] } }
    }
}

/// An optimizer's element-wise update: given the (decayed) values, the (clipped) gradients and
/// the flat index of the first lane into the slots, returns the new values and updates the slots.
protocol UpdateKernel {
    func update<V: Lanes>(_ x: V, _ g: V, _ i: Int) -> V
}

protocol GradientMap {
    func callAsFunction<V: Lanes>(_ g: V) -> V
}

struct KeepGradient: GradientMap {
    @inline(__always) func callAsFunction<V: Lanes>(_ g: V) -> V { g }
}

/// tf.clip_by_norm's arithmetic: (g * c) / max(norm, c), even when nothing is clipped.
struct ClipGradientNorm: GradientMap {
    let c: Float, d: Float
    @inline(__always) func callAsFunction<V: Lanes>(_ g: V) -> V { (g * V(splat: c)) / V(splat: d) }
}

struct ScaleGradient: GradientMap {
    let s: Float
    @inline(__always) func callAsFunction<V: Lanes>(_ g: V) -> V { g * V(splat: s) }
}

/// tf.clip_by_value(g, -c, c).
struct ClampGradient: GradientMap {
    let c: Float
    @inline(__always) func callAsFunction<V: Lanes>(_ g: V) -> V { g.clamped(V(splat: c)) }
}

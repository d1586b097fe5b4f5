// Optimizers against tf-keras 2.21 and Keras 3.15: the same initial parameters and ten gradient
// sets, applied by Keras (inside tf.function, as model.fit runs them) and by distillctl; the
// parameters after step 1 and step 10 and the slot variables after step 10 must agree.
import Foundation
import XCTest
import TestSupport
@testable import Runtime

/// Parameters and gradients in memory the optimizer can hold pointers to.
final class FixtureParameters {
    let names: [String]
    let counts: [Int]
    let values: [UnsafeMutablePointer<Float>]
    let gradients: [UnsafeMutablePointer<Float>]

    init(names: [String], initial: [[Float]]) {
        self.names = names
        counts = initial.map(\.count)
        values = initial.map { v in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(v.count, 1))
            p.initialize(from: v, count: v.count)
            return p
        }
        gradients = initial.map { v in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(v.count, 1))
            p.initialize(repeating: 0, count: v.count)
            return p
        }
    }

    deinit { (values + gradients).forEach { $0.deallocate() } }

    var buffers: [ParameterBuffer] {
        (0..<names.count).map { ParameterBuffer(name: names[$0], value: values[$0], gradient: gradients[$0], count: counts[$0]) }
    }

    func setGradients(_ g: [[Float]]) {
        for (i, v) in g.enumerated() { gradients[i].update(from: v, count: v.count) }
    }

    var current: [[Float]] { (0..<names.count).map { Array(UnsafeBufferPointer(start: values[$0], count: counts[$0])) } }
}

/// An optimizer from a fixture's config (the Keras arguments it was made with).
func makeOptimizer(_ c: [String: Any], flavor: KerasFlavor) -> Optimizer {
    let kind = c["optimizer"] as! String
    let defaultRate = kind == "sgd" ? 0.01 : 0.001
    let rate: LearningRate = (c["schedule"] as? [String: Any]).map { .schedule(makeSchedule($0)) }
        ?? .constant(double(c["learning_rate"]) ?? defaultRate)
    var clipping = GradientClipping.none
    if let v = double(c["clipnorm"]) { clipping = .norm(v) }
    if let v = double(c["global_clipnorm"]) { clipping = .globalNorm(v) }
    if let v = double(c["clipvalue"]) { clipping = .value(v) }
    let decay = double(c["weight_decay"])
    switch kind {
    case "adam":
        return Adam(learningRate: rate, beta1: double(c["beta_1"]) ?? 0.9, beta2: double(c["beta_2"]) ?? 0.999,
                    epsilon: double(c["epsilon"]) ?? 1e-7, amsgrad: c["amsgrad"] as? Bool ?? false,
                    weightDecay: decay, clipping: clipping, flavor: flavor)
    case "sgd":
        return SGD(learningRate: rate, momentum: double(c["momentum"]) ?? 0, nesterov: c["nesterov"] as? Bool ?? false,
                   weightDecay: decay, clipping: clipping, flavor: flavor)
    case "rmsprop":
        return RMSprop(learningRate: rate, rho: double(c["rho"]) ?? 0.9, momentum: double(c["momentum"]) ?? 0,
                       epsilon: double(c["epsilon"]) ?? 1e-7, centered: c["centered"] as? Bool ?? false,
                       weightDecay: decay, clipping: clipping, flavor: flavor)
    default:
        fatalError("unknown optimizer \(kind)")
    }
}

struct OptimizerFixture {
    let names: [String]
    let initial: [[Float]]
    let gradients: [[[Float]]]   // [step][parameter]
    let cases: [[String: Any]]

    init(_ flavorFile: String) throws {
        let json = try loadTrainingFixture("optimizers_\(flavorFile)")
        let params = json["parameters"] as! [[String: Any]]
        names = params.map { $0["name"] as! String }
        initial = params.map { floats($0["initial"]) }
        gradients = (json["gradients"] as! [[Any]]).map { $0.map { floats($0) } }
        cases = json["cases"] as! [[String: Any]]
    }

    /// A built optimizer for `config`, at the fixture's starting iteration.
    func start(_ config: [String: Any], flavor: KerasFlavor) throws -> (Optimizer, FixtureParameters) {
        let opt = makeOptimizer(config, flavor: flavor)
        let store = FixtureParameters(names: names, initial: initial)
        try opt.build(store.buffers)
        if let startIterations = config["start_iterations"] as? Int {
            var state = opt.state()
            state.iterations = startIterations
            try opt.restore(state)
        }
        return (opt, store)
    }
}

final class OptimizerTests: XCTestCase {
    func testEveryOptimizerMatchesKeras() throws {
        let worst = WorstDifferences()
        for (file, flavor) in kerasFlavors {
            let fixture = try OptimizerFixture(file)
            XCTAssertGreaterThanOrEqual(fixture.cases.count, 13)
            for c in fixture.cases {
                let name = "\(file) \(c["name"] as! String)"
                let config = c["config"] as! [String: Any]
                let (opt, store) = try fixture.start(config, flavor: flavor)
                for (step, g) in fixture.gradients.enumerated() {
                    store.setGradients(g)
                    try opt.apply(store.buffers)
                    if step == 0 {
                        let want = (c["after_step_1"] as! [Any]).map { floats($0) }
                        let d = assertRelative(store.current.flatMap { $0 }, want.flatMap { $0 }, rel: 1e-6, "\(name) step 1")
                        worst.note("\(name) parameters", d)
                    }
                }
                XCTAssertEqual(opt.iterations, c["iterations"] as? Int, name)
                let want = (c["after_step_10"] as! [Any]).map { floats($0) }
                worst.note("\(name) parameters", assertRelative(store.current.flatMap { $0 }, want.flatMap { $0 }, rel: 1e-6, "\(name) step 10"))
                // Slots: the names and every value.
                let slots = c["slots"] as! [String: Any]
                let state = opt.state()
                var seen = Set<String>()
                for (slotName, arrays) in slots {
                    for (p, expected) in (arrays as! [Any]).enumerated() {
                        let key = "\(fixture.names[p])/\(slotName)"
                        seen.insert(key)
                        guard let got = state.slots.first(where: { $0.name == key }) else { XCTFail("\(name): no slot \(key)"); continue }
                        // A slot element can be a small difference of larger terms (m sums gradients
                        // of both signs), which magnifies an ulp of its inputs; relative error is
                        // measured against 1% of the array's largest magnitude at least.
                        let want = floats(expected)
                        let scale = 0.01 * Double(want.map { abs($0) }.max() ?? 0)
                        worst.note("\(name) slots", assertRelative(got.values, want, rel: 1e-6, floor: max(scale, 1e-30), "\(name) \(key)"))
                    }
                }
                XCTAssertEqual(Set(state.slots.map(\.name)), seen, "\(name): slot names")
            }
        }
        worst.report("Optimizers: worst relative difference to Keras")
    }

    /// The fixtures can tell formulas apart: the textbook Adam update (epsilon added to the
    /// bias-corrected sqrt(v_hat)) run in Double lands far outside the tolerance.
    func testFixtureRejectsTextbookAdam() throws {
        let fixture = try OptimizerFixture("k2")
        let c = fixture.cases.first { $0["name"] as? String == "adam_default" }!
        var x = fixture.initial.flatMap { $0 }.map(Double.init)
        var m = [Double](repeating: 0, count: x.count), v = m
        for (t, g) in fixture.gradients.enumerated() {
            let gs = g.flatMap { $0 }
            for i in x.indices {
                let gi = Double(gs[i])
                m[i] = 0.9 * m[i] + 0.1 * gi
                v[i] = 0.999 * v[i] + 0.001 * gi * gi
                let mh = m[i] / (1 - pow(0.9, Double(t + 1))), vh = v[i] / (1 - pow(0.999, Double(t + 1)))
                x[i] -= 0.001 * mh / (vh.squareRoot() + 1e-7)
            }
        }
        let want = (c["after_step_10"] as! [Any]).flatMap { floats($0) }
        let (rel, _) = worstRelative(x.map { Float($0) }, want)
        print("textbook Adam vs tf-keras after 10 steps: worst relative \(rel)")
        XCTAssertGreaterThan(rel, 1e-4)
    }

    /// Saving the state after 4 steps and restoring it into a fresh optimizer (through JSON, as a
    /// checkpoint would) continues bit for bit like an uninterrupted run.
    func testStateRoundTripResumesExactly() throws {
        let fixture = try OptimizerFixture("k2")
        for c in fixture.cases {
            let name = c["name"] as! String
            let config = c["config"] as! [String: Any]
            let (straight, straightStore) = try fixture.start(config, flavor: .tfKeras2)
            for g in fixture.gradients { straightStore.setGradients(g); try straight.apply(straightStore.buffers) }
            let (first, store) = try fixture.start(config, flavor: .tfKeras2)
            for g in fixture.gradients[..<4] { store.setGradients(g); try first.apply(store.buffers) }
            let saved = try JSONDecoder().decode(OptimizerState.self, from: JSONEncoder().encode(first.state()))
            XCTAssertEqual(saved, first.state(), name)

            let second = makeOptimizer(config, flavor: .tfKeras2)
            try second.build(store.buffers)
            try second.restore(saved)
            XCTAssertEqual(second.state(), saved, name)
            for g in fixture.gradients[4...] { store.setGradients(g); try second.apply(store.buffers) }
            XCTAssertTrue(store.current == straightStore.current, "\(name): resumed run differs")
            XCTAssertEqual(second.state(), straight.state(), name)
        }
    }

    func testRestoreRejectsMismatchedState() throws {
        let store = FixtureParameters(names: ["a", "b"], initial: [[1, 2, 3], [4]])
        let adam = Adam()
        try adam.build(store.buffers)
        var state = adam.state()
        XCTAssertEqual(state.slots.map(\.name), ["a/m", "a/v", "b/m", "b/v"])
        state.slots[1].values.removeLast()
        XCTAssertThrowsError(try adam.restore(state))
        state = adam.state()
        state.slots.removeLast()
        XCTAssertThrowsError(try adam.restore(state))
        state = adam.state()
        state.optimizer = "sgd"
        XCTAssertThrowsError(try adam.restore(state))
        XCTAssertThrowsError(try Adam().restore(adam.state()), "restore before build")
        // A different parameter list is refused, and nothing is updated.
        let other = FixtureParameters(names: ["a", "c"], initial: [[1, 2, 3], [4]])
        XCTAssertThrowsError(try adam.apply(other.buffers))
        XCTAssertEqual(adam.iterations, 0)
    }

    func testScheduledLearningRateIsNotSettable() throws {
        let scheduled = Adam(learningRate: .schedule(ExponentialDecay(initialLearningRate: 0.1, decaySteps: 2, decayRate: 0.5)))
        XCTAssertThrowsError(try scheduled.setLearningRate(0.5))
        let fixed = SGD(learningRate: .constant(0.1))
        try fixed.setLearningRate(0.5)
        XCTAssertEqual(fixed.learningRate, 0.5)
    }

    /// Weight decay skips excluded names (Keras's exclude_from_weight_decay(var_names=...)).
    func testWeightDecayExclusion() throws {
        let store = FixtureParameters(names: ["dense/kernel", "dense/bias"], initial: [[1, -2], [3]])
        let sgd = SGD(learningRate: .constant(0.1), weightDecay: 0.5, weightDecayExcludes: ["bias"])
        try sgd.apply(store.buffers)  // zero gradients: only decay moves anything
        let wd: Float = 0.5, lr: Float = 0.1
        let kernel: [Float] = [1 - 1 * wd * lr, -2 - -2 * wd * lr]
        XCTAssertEqual(store.current, [kernel, [3]])
    }

    /// The SIMD body and the scalar tail compute the same bits: the same values and gradients at
    /// vector positions (a 16-element tensor) and at tail positions (a 7-element one).
    func testVectorAndScalarPathsAgree() throws {
        var rng = SeededRandom(5)
        let values = rng.floats(16), grads = rng.floats(16, -3, 3).enumerated().map { i, g in i % 3 == 0 ? g * 1e-6 : g }
        let makers: [() -> Optimizer] = [
            { Adam(learningRate: .constant(0.01), weightDecay: 0.1, clipping: .value(1)) },
            { Adam(learningRate: .constant(0.01), amsgrad: true, clipping: .norm(0.5)) },
            { SGD(learningRate: .constant(0.1), momentum: 0.9, nesterov: true, clipping: .globalNorm(1)) },
            { SGD(learningRate: .constant(0.1)) },
            { RMSprop(learningRate: .constant(0.01), momentum: 0.5, centered: true) },
            { RMSprop(learningRate: .constant(0.01), momentum: 0.5, centered: true, flavor: .keras3) },
        ]
        for make in makers {
            // Clipping by norm depends on the tensor, so both tensors must have the same norm:
            // tail tensor = the first 7 elements, vector tensor = those 7, then zeros.
            let vec = Array(values[0..<7]) + [Float](repeating: 0.5, count: 9)
            let vecG = Array(grads[0..<7]) + [Float](repeating: 0, count: 9)
            let a = FixtureParameters(names: ["v"], initial: [vec]), b = FixtureParameters(names: ["t"], initial: [Array(values[0..<7])])
            a.setGradients([vecG]); b.setGradients([Array(grads[0..<7])])
            let oa = make(), ob = make()
            for _ in 0..<3 { try oa.apply(a.buffers); try ob.apply(b.buffers) }
            XCTAssertEqual(Array(a.current[0][0..<7]), b.current[0], "\(type(of: oa))")
        }
    }

    /// Many parameters split over the workers at arbitrary boundaries give the same bits as one
    /// worker (the time is printed for information; speed is measured by benchmarks, not tests).
    func testParallelUpdateMatchesSerial() throws {
        var rng = SeededRandom(11)
        let sizes = [3, 1, 40_000, 7, 1_000_003, 64, 2_900_000, 5]
        let initial = sizes.map { rng.floats($0) }
        let grads = sizes.map { rng.floats($0, -0.01, 0.01) }
        let names = sizes.indices.map { "p\($0)" }
        func run(threads: Int, _ make: () -> Optimizer) throws -> ([[Float]], Double) {
            let saved = RuntimeThreads.count
            RuntimeThreads.set(threads)
            defer { RuntimeThreads.set(saved) }
            let store = FixtureParameters(names: names, initial: initial)
            store.setGradients(grads)
            let opt = make()
            try opt.apply(store.buffers)
            let t0 = Date()
            try opt.apply(store.buffers)
            try opt.apply(store.buffers)
            return (store.current, Date().timeIntervalSince(t0) / 2)
        }
        let makers: [(String, () -> Optimizer)] = [
            ("adam", { Adam() }),
            ("adam amsgrad + global clipnorm + decay", { Adam(amsgrad: true, weightDecay: 0.01, clipping: .globalNorm(1)) }),
            ("sgd nesterov + clipnorm", { SGD(momentum: 0.9, nesterov: true, clipping: .norm(0.5)) }),
            ("rmsprop centered", { RMSprop(momentum: 0.5, centered: true) }),
        ]
        for (label, make) in makers {
            let (serial, serialTime) = try run(threads: 1, make)
            let (parallel, parallelTime) = try run(threads: max(2, RuntimeThreads.count), make)
            XCTAssertTrue(serial == parallel, "\(label): parallel result differs from serial")
            print(String(format: "%@ over %d parameters: %.1f ms per step on 1 thread, %.1f ms on %d",
                         label, sizes.reduce(0, +), serialTime * 1000, parallelTime * 1000, max(2, RuntimeThreads.count)))
        }
    }

    /// The non-finite checks keep a flag per worker: a parameter that spans several workers'
    /// chunks is reported wherever in it the bad element lies, and only the first bad parameter
    /// (in build order) is named.
    func testNonFiniteChecksAcrossWorkerChunks() throws {
        let saved = RuntimeThreads.count
        RuntimeThreads.set(max(2, saved))
        defer { RuntimeThreads.set(saved) }
        let sizes = [5, 300_001, 3, 70_000]
        let names = sizes.indices.map { "p\($0)" }
        for bad in [0, 37_000, 150_000, 300_000] {
            let store = FixtureParameters(names: names, initial: sizes.map { [Float](repeating: 1, count: $0) })
            let opt = SGD(learningRate: .constant(1e30))
            try opt.build(store.buffers)
            XCTAssertNil(opt.firstNonFiniteGradient(store.buffers))
            try opt.apply(store.buffers)
            XCTAssertNil(opt.firstNonFiniteValue, "zero gradients leave finite weights")
            store.gradients[3][69_999] = .infinity
            XCTAssertEqual(opt.firstNonFiniteGradient(store.buffers), 3)
            store.gradients[1][bad] = .nan
            XCTAssertEqual(opt.firstNonFiniteGradient(store.buffers), 1, "NaN gradient at \(bad)")
            store.gradients[1][bad] = 1e20
            store.gradients[3][69_999] = 1e20
            XCTAssertNil(opt.firstNonFiniteGradient(store.buffers))
            try opt.apply(store.buffers)     // 1 - 1e30 * 1e20 overflows to -inf
            XCTAssertEqual(opt.firstNonFiniteValue, 1, "infinite weight at \(bad)")
        }
    }
}

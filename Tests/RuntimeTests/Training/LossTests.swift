// Losses against tf-keras 2.21 and Keras 3.15: values from Keras's loss classes and gradients
// from tf.GradientTape, for cross-entropy on probabilities (renormalisation and both ends of the
// clip exercised), on logits, with sparse labels, and the distillation loss written with Keras
// losses (KLDivergence on softmax(t/T), softmax(s/T)) for several alpha and T, with some or all
// rows unlabelled. Plus finite differences of every gradient in Double.
import Foundation
import XCTest
import TestSupport
@testable import Runtime

final class LossTests: XCTestCase {
    static let classes = 5

    func targets(_ c: [String: Any]) -> ClassTargets {
        c["labels"] != nil ? .sparse(ints(c["labels"])) : .distribution(floats(c["y"]))
    }

    /// Runs our loss for a fixture case: (loss, gradient, distillation details).
    func evaluate(_ c: [String: Any]) -> (Float, [Float], DistillationLoss?) {
        let k = Self.classes
        switch c["kind"] as! String {
        case "cce_probs", "sparse_cce_probs":
            let r = Losses.crossentropy(probabilities: floats(c["probs"]), targets: targets(c), classes: k)
            return (r.loss, r.gradient, nil)
        case "cce_logits", "sparse_cce_logits":
            let r = Losses.crossentropy(logits: floats(c["logits"]), targets: targets(c), classes: k)
            return (r.loss, r.gradient, nil)
        case "distillation":
            let r = Losses.distillation(student: floats(c["student"]), teacher: floats(c["teacher"]), labels: targets(c),
                                        classes: k, alpha: double(c["alpha"])!, temperature: double(c["temperature"])!)
            return (r.loss.total, r.gradient, r.loss)
        default:
            fatalError("unknown loss kind")
        }
    }

    func testLossesMatchKeras() throws {
        let worst = WorstDifferences()
        for (file, _) in kerasFlavors {
            let cases = try loadTrainingFixture("losses_\(file)")["cases"] as! [[String: Any]]
            XCTAssertEqual(cases.count, 15)
            for c in cases {
                let name = "\(file) \(c["name"] as! String)"
                let (loss, gradient, details) = evaluate(c)
                worst.note("loss (relative)", assertRelative([loss], [Float(double(c["loss"])!)], rel: 1e-6, "\(name) loss"))
                if let details {
                    worst.note("distillation parts (relative)", assertRelative([details.soft], [Float(double(c["soft_loss"])!)], rel: 1e-6, "\(name) soft"))
                    if let hard = double(c["hard_loss"]) {
                        XCTAssertNotNil(details.hard, name)
                        worst.note("distillation parts (relative)", assertRelative([details.hard ?? .nan], [Float(hard)], rel: 1e-6, "\(name) hard"))
                    } else {
                        XCTAssertNil(details.hard, name)
                    }
                }
                // Gradients: within 1e-5, relative for the large ones (1/q near the clip floor).
                let expected = floats(c["gradient"])
                worst.note("gradient (abs, or rel above 1)", assertRelative(gradient, expected, rel: 1e-5, floor: 1, "\(name) gradient"))
            }
        }
        worst.report("Losses: worst difference to Keras")
    }

    /// Every gradient against central differences of the loss in Double (away from the clip's
    /// kinks: the finite-difference step must not cross a clip boundary or an argmax tie).
    func testGradientsMatchFiniteDifferences() throws {
        let cases = try loadTrainingFixture("losses_k2")["cases"] as! [[String: Any]]
        for c in cases {
            var c = c
            let name = c["name"] as! String
            let key = ["probs", "logits", "student"].first { c[$0] != nil }!
            var x = floats(c[key])
            if key == "probs" {
                // Smooth inputs: all inside the clip range, rows not normalised.
                var rng = SeededRandom(3)
                x = x.map { _ in rng.uniform(0.05, 0.4) }
                c[key] = x.map { NSNumber(value: $0) }
            }
            let (_, gradient, _) = evaluate(c)
            for i in x.indices {
                let h: Float = key == "probs" ? 1e-3 : 1e-2
                var plus = c, minus = c
                var xp = x, xm = x
                xp[i] += h; xm[i] -= h
                plus[key] = xp.map { NSNumber(value: $0) }
                minus[key] = xm.map { NSNumber(value: $0) }
                let fd = (Double(evaluate(plus).0) - Double(evaluate(minus).0)) / Double(xp[i] - xm[i])
                XCTAssertEqual(Double(gradient[i]), fd, accuracy: 2e-3 * max(1, abs(fd)), "\(name)[\(i)]")
            }
        }
    }

    /// The fixtures can tell the clipped KL (Keras's KLDivergence) from the textbook gradient
    /// T * (p_s - p_t): at T = 0.5 some student probabilities fall below 1e-7, where the clip
    /// passes no gradient.
    func testFixtureSeesKLClipping() throws {
        let cases = try loadTrainingFixture("losses_k2")["cases"] as! [[String: Any]]
        let c = cases.first { $0["name"] as? String == "distill_a0.3_T0.5" }!
        let k = Self.classes, s = floats(c["student"]), t = floats(c["teacher"]), labels = ints(c["labels"])
        let alpha = double(c["alpha"])!, temperature = double(c["temperature"])!
        let n = labels.count
        var textbook = Losses.crossentropy(logits: s, targets: .sparse(labels), classes: k).gradient.map { Double($0) * alpha }
        for r in 0..<n {
            let zs = (0..<k).map { Double(s[r * k + $0]) / temperature }, zt = (0..<k).map { Double(t[r * k + $0]) / temperature }
            let es = zs.map { exp($0 - zs.max()!) }, et = zt.map { exp($0 - zt.max()!) }
            for j in 0..<k {
                let ps = es[j] / es.reduce(0, +), pt = et[j] / et.reduce(0, +)
                textbook[r * k + j] += (1 - alpha) * temperature / Double(n) * (ps - pt)
            }
        }
        let keras = floats(c["gradient"])
        let worst = zip(textbook, keras).map { abs($0 - Double($1)) }.max()!
        print("textbook KL gradient vs Keras at T=0.5: max difference \(worst)")
        XCTAssertGreaterThan(worst, 1e-3)
    }

    /// The documented averaging of unlabelled rows, checked by hand on one batch.
    func testUnlabelledRowsAveraging() {
        let s: [Float] = [1, 0, -1, 0.5, 0.5, 0, 2, 1, 0]
        let t: [Float] = [0, 1, 0, 1, 0, 0, 0, 0, 3]
        let k = 3
        let all = Losses.distillation(student: s, teacher: t, labels: .sparse([0, -1, 2]), classes: k, alpha: 0.4, temperature: 2).loss
        let hardOnly = Losses.crossentropy(logits: Array(s[0..<3]) + Array(s[6..<9]), targets: .sparse([0, 2]), classes: k).loss
        let softOnly = Losses.distillation(student: s, teacher: t, labels: nil, classes: k, alpha: 0, temperature: 2).loss
        XCTAssertEqual(all.labelled, 2)
        XCTAssertEqual(all.hard!, hardOnly, accuracy: 1e-6)
        XCTAssertEqual(all.soft, softOnly.total, accuracy: 1e-6)
        XCTAssertEqual(all.total, 0.4 * hardOnly + 0.6 * softOnly.total, accuracy: 1e-6)
        // No labels: only the soft term, with its usual (1 - alpha) weight.
        let none = Losses.distillation(student: s, teacher: t, labels: .sparse([-1, -1, -1]), classes: k, alpha: 0.4, temperature: 2).loss
        XCTAssertNil(none.hard)
        XCTAssertEqual(none.total, 0.6 * none.soft, accuracy: 1e-7)
        // All-zero distribution rows are unlabelled too.
        let dense = Losses.distillation(student: s, teacher: t, labels: .distribution([1, 0, 0, 0, 0, 0, 0, 0, 1]),
                                        classes: k, alpha: 0.4, temperature: 2).loss
        XCTAssertEqual(dense.total, all.total, accuracy: 1e-7)
        // alpha = 1 with no labels: nothing to learn from.
        let (zero, g) = Losses.distillation(student: s, teacher: t, labels: nil, classes: k, alpha: 1, temperature: 2)
        XCTAssertEqual(zero.total, 0)
        XCTAssertTrue(g.allSatisfy { $0 == 0 })
    }

    func testAccuracyMatchesKeras() throws {
        for (file, _) in kerasFlavors {
            let acc = try loadTrainingFixture("losses_\(file)")["accuracy"] as! [String: Any]
            let logits = floats(acc["logits"]), labels = ints(acc["labels"])
            let k = Self.classes
            let categorical = ints(acc["categorical"]), sparse = ints(acc["sparse"])
            XCTAssertEqual(categorical, sparse)
            XCTAssertTrue(categorical.contains(0) && categorical.contains(1), "fixture needs hits and misses")
            let onehot = labels.flatMap { y in (0..<k).map { $0 == y ? Float(1) : 0 } }
            for r in labels.indices {
                let row = Array(logits[r * k..<(r + 1) * k])
                let s = Metrics.correctPredictions(outputs: row, targets: .sparse([labels[r]]), classes: k)
                let d = Metrics.correctPredictions(outputs: row, targets: .distribution(Array(onehot[r * k..<(r + 1) * k])), classes: k)
                XCTAssertEqual(s.correct, sparse[r], "\(file) row \(r)")
                XCTAssertEqual(d.correct, categorical[r], "\(file) row \(r)")
            }
            let whole = Metrics.correctPredictions(outputs: logits, targets: .sparse(labels), classes: k)
            XCTAssertEqual(whole.correct, sparse.reduce(0, +))
            XCTAssertEqual(whole.counted, labels.count)
            var partial = labels
            partial[0] = -1
            XCTAssertEqual(Metrics.correctPredictions(outputs: logits, targets: .sparse(partial), classes: k).counted, labels.count - 1)
        }
    }

    func testEpochMetricsWeightByRows() {
        var m = EpochMetrics()
        XCTAssertNil(m.loss)
        m.addLoss(1, rows: 8)
        m.addLoss(4, rows: 2)   // a short last batch counts for its rows only
        m.addAccuracy(correct: 3, counted: 8)
        m.addAccuracy(correct: 1, counted: 2)
        XCTAssertEqual(m.loss!, 1.6, accuracy: 1e-12)
        XCTAssertEqual(m.accuracy!, 0.4, accuracy: 1e-12)
        m.reset()
        XCTAssertNil(m.accuracy)
    }
}

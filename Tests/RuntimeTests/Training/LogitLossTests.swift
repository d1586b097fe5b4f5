// DKD and DIST against TensorFlow translations of the authors' reference code
// (fixtures/make_logit_loss_fixtures.py, float64, gradients from tf.GradientTape), and every
// soft-term gradient against central differences of its value in Double.
import Foundation
import XCTest
import TestSupport
@testable import Runtime

final class LogitLossTests: XCTestCase {
    func softLoss(_ c: [String: Any]) -> SoftLoss {
        let p = c["params"] as! [String: Any]
        switch c["loss"] as! String {
        case "dkd": return .dkd(alpha: double(p["alpha"])!, beta: double(p["beta"])!)
        case "dist": return .dist(beta: double(p["beta"])!, gamma: double(p["gamma"])!)
        default: fatalError("unknown loss")
        }
    }

    func testDKDAndDISTMatchTensorFlowReference() throws {
        let cases = try loadTrainingFixture("logit_losses")["cases"] as! [[String: Any]]
        XCTAssertEqual(cases.count, 13)
        let worst = WorstDifferences()
        for c in cases {
            let name = c["name"] as! String
            let (loss, gradient) = Losses.distillation(
                student: floats(c["student"]), teacher: floats(c["teacher"]), labels: .sparse(ints(c["labels"])),
                classes: ints([c["classes"]!])[0], alpha: double(c["alpha"])!, temperature: double(c["temperature"])!,
                softLoss: softLoss(c))
            worst.note("total (relative)", assertRelative([loss.total], [Float(double(c["total"])!)], rel: 2e-6, "\(name) total"))
            worst.note("soft (relative)", assertRelative([loss.soft], [Float(double(c["soft"])!)], rel: 2e-6, "\(name) soft"))
            if let hard = double(c["hard"]) {
                worst.note("hard (relative)", assertRelative([loss.hard ?? .nan], [Float(hard)], rel: 2e-6, "\(name) hard"))
            } else {
                XCTAssertNil(loss.hard, name)
            }
            worst.note("gradient (abs, or rel above 1)",
                       assertRelative(gradient, floats(c["gradient"]), rel: 1e-5, floor: 1, "\(name) gradient"))
        }
        worst.report("DKD/DIST: worst difference to TensorFlow")
    }

    /// The soft term's gradient (kd, dkd, dist) against central differences of its Double value.
    func testSoftGradientsMatchFiniteDifferences() throws {
        var rng = SeededRandom(11)
        let n = 5, k = 6
        let s = (0..<n * k).map { _ in rng.uniform(-3, 3) }, t = (0..<n * k).map { _ in rng.uniform(-4, 4) }
        let targets = [0, 3, 5, 1, 1]
        for loss in [SoftLoss.kd, .dkd(alpha: 1, beta: 8), .dkd(alpha: 0.3, beta: 2), .dist(beta: 1, gamma: 1), .dist(beta: 0.5, gamma: 2)] {
            for temperature in [1.0, 4.0] {
                func value(_ x: [Float], gradient: UnsafeMutablePointer<Float>? = nil) -> Double {
                    x.withUnsafeBufferPointer { xp in
                        t.withUnsafeBufferPointer { tp in
                            Losses.softTerm(loss, student: xp.baseAddress!, teacher: tp.baseAddress!, rows: n, classes: k,
                                            temperature: temperature, targets: targets, rowsNormalizer: Double(n),
                                            weight: 1, gradient: gradient)
                        }
                    }
                }
                var g = [Float](repeating: 0, count: n * k)
                _ = g.withUnsafeMutableBufferPointer { value(s, gradient: $0.baseAddress!) }
                var worst = 0.0
                for i in s.indices {
                    var xp = s, xm = s
                    xp[i] += 1e-2; xm[i] -= 1e-2
                    let fd = (value(xp) - value(xm)) / Double(xp[i] - xm[i])
                    worst = max(worst, abs(Double(g[i]) - fd))
                    XCTAssertEqual(Double(g[i]), fd, accuracy: 1e-3 * max(1, abs(fd)), "\(loss.description) T=\(temperature) [\(i)]")
                }
                print("\(loss.description) T=\(temperature): gradient vs finite differences, max difference \(worst)")
            }
        }
    }

    /// An unlabelled row's DKD target is the teacher's top class: the same as labelling it so.
    func testDKDUnlabelledRowUsesTeacherTopClass() {
        let s: [Float] = [1, 0, -1, 0.5, 0.5, 0, 2, 1, 0], t: [Float] = [0, 1, 0, 1, 0, 3, 0, 0, 3]
        let dkd = SoftLoss.dkd(alpha: 1, beta: 8)
        let unlabelled = Losses.distillation(student: s, teacher: t, labels: .sparse([-1, -1, -1]), classes: 3, alpha: 0,
                                             temperature: 2, softLoss: dkd)
        let asTeacher = Losses.distillation(student: s, teacher: t, labels: .sparse([1, 2, 2]), classes: 3, alpha: 0,
                                            temperature: 2, softLoss: dkd)
        XCTAssertEqual(unlabelled.loss.soft, asTeacher.loss.soft)
        XCTAssertEqual(unlabelled.gradient, asTeacher.gradient)
        let otherTarget = Losses.distillation(student: s, teacher: t, labels: .sparse([0, 2, 2]), classes: 3, alpha: 0,
                                              temperature: 2, softLoss: dkd)
        XCTAssertNotEqual(unlabelled.loss.soft, otherTarget.loss.soft)
    }

    /// kd through the new soft-term path is the loss as it was: the Keras fixtures still hold
    /// (LossTests), and an explicit .kd equals the default.
    func testKDIsTheDefault() {
        let s: [Float] = [1, 0, -1, 0.5, 0.5, 0], t: [Float] = [0, 1, 0, 1, 0, 3]
        let a = Losses.distillation(student: s, teacher: t, labels: .sparse([0, 2]), classes: 3, alpha: 0.4, temperature: 3)
        let b = Losses.distillation(student: s, teacher: t, labels: .sparse([0, 2]), classes: 3, alpha: 0.4, temperature: 3, softLoss: .kd)
        XCTAssertEqual(a.loss, b.loss)
        XCTAssertEqual(a.gradient, b.gradient)
        XCTAssertEqual(SoftLoss.kd.description, "kd")
        XCTAssertEqual(SoftLoss.dkd(alpha: 1, beta: 8).description, "dkd(alpha=1.0, beta=8.0)")
    }
}

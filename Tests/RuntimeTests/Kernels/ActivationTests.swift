import XCTest
import Graph
import TestSupport
@testable import Runtime

final class ActivationTests: XCTestCase {
    /// Inputs over the interesting ranges: around 0, the polynomial switch points, the tails.
    func inputs() -> [Float] {
        var rng = SeededRandom(7)
        var xs: [Float] = [0, -0.0, 1e-7, -1e-7, 1e-4, -1e-4, 0.3, -0.3, 0.5, -0.5, 0.625, -0.625, 1, -1,
                           1.4142135, -1.4142135, 2, -2, 5, -5, 9, -9, 14, -14, 20, -20, 40, -40,
                           85, -85, 87.5, -87.5, 88.5, -88.5, 89, -89, 100, -100, 0.25, -0.25, 4, 6, 6.5, 2.5]
        xs += rng.floats(3000, -6, 6) + rng.floats(997, -30, 30)   // not a multiple of 8: tail path
        return xs
    }

    func check(_ spec: ActivationSpec, rel: Double, abs: Double = 1e-30, file: StaticString = #filePath, line: UInt = #line) {
        let xs = inputs()
        let got = xs.mutated { applyActivation(spec, $0, count: xs.count) }
        // Rounded to Float so overflow to infinity is expected where Float overflows.
        let want = xs.map { Double(Float(referenceActivation(spec, Double($0)))) }
        // Values below 1e-30 are at float's denormal edge; only their absolute size matters.
        assertRelClose(got, want, rel: rel, abs: abs, inputs: xs, "\(spec)", file: file, line: line)
    }

    func testEveryActivationMatchesDoubleReference() {
        for spec in allActivationSpecs {
            let rel: Double
            switch spec.kind {
            case .gelu, .softplus, .tanh, .elu, .selu: rel = 2e-6
            case .exponential, .sigmoid, .swish: rel = 1e-6
            default: rel = 2.5e-7   // a rounding or two
            }
            // hard_sigmoid's alpha * x + 0.5 cancels near x = -0.5/alpha: float rounding of the
            // sum is an absolute error of ~3e-8.
            check(spec, rel: rel, abs: spec.kind == .hardSigmoid ? 1e-7 : 1e-30)
        }
    }

    /// A large buffer goes through parallelFor; every element must still be transformed once.
    func testLargeBufferSplitAcrossWorkers() {
        var rng = SeededRandom(11)
        let xs = rng.floats(200_003, -8, 8)
        let got = xs.mutated { applyActivation(.swish, $0, count: xs.count) }
        assertRelClose(got, xs.map { referenceActivation(.swish, Double($0)) }, rel: 1e-6, abs: 1e-30)
    }

    func testExponentialOverflowsToInfinityAndUnderflowsToZero() {
        let got = [Float](arrayLiteral: 89, 200, -104, -200, -95).mutated { applyActivation(ActivationSpec(.exponential), $0, count: 5) }
        XCTAssertEqual(got[0], .infinity)   // e^89 > Float.greatestFiniteMagnitude
        XCTAssertEqual(got[1], .infinity)
        XCTAssertEqual(got[2], 0)
        XCTAssertEqual(got[3], 0)
        XCTAssertEqual(Double(got[4]), Foundation.exp(-95.0), accuracy: 1e-44)   // a denormal, not 0
    }
}

// Shared by the kernel tests: seeded random data, Double-precision reference activations, and a
// relative-error assertion for the element-wise kernels.
import Foundation
import XCTest
import Graph
@testable import Runtime

/// Deterministic uniform numbers (SplitMix64), so a failing case reproduces.
struct SeededRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func floats(_ n: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<n).map { _ in uniform(lo, hi) }
    }
}

/// Keras's activation formulas in Double.
func referenceActivation(_ spec: ActivationSpec, _ x: Double) -> Double {
    let a = Double(spec.alpha)
    switch spec.kind {
    case .linear: return x
    case .relu, .relu6:
        let maxValue = spec.kind == .relu6 ? Double(spec.maxValue ?? 6) : spec.maxValue.map(Double.init)
        let t = Double(spec.threshold)
        var pos = x > t ? x : 0
        if let m = maxValue { pos = min(max(pos, 0), m) }
        return pos - a * max(t - x, 0)
    case .leakyRelu: return x >= 0 ? x : a * x
    case .elu: return x > 0 ? x : a * Foundation.expm1(x)
    case .selu: return 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * Foundation.expm1(x))
    case .sigmoid: return 1 / (1 + Foundation.exp(-x))
    case .hardSigmoid: return min(max(a * x + 0.5, 0), 1)
    case .swish: return x / (1 + Foundation.exp(-x))
    case .gelu: return 0.5 * x * Foundation.erfc(-x / 2.0.squareRoot())
    case .tanh: return Foundation.tanh(x)
    case .softplus: return x > 0 ? x + Foundation.log1p(Foundation.exp(-x)) : Foundation.log1p(Foundation.exp(x))
    case .softsign: return x / (1 + abs(x))
    case .exponential: return Foundation.exp(x)
    case .mish:
        let sp = x > 0 ? x + Foundation.log1p(Foundation.exp(-x)) : Foundation.log1p(Foundation.exp(x))
        return x * Foundation.tanh(sp)
    case .hardSilu: return x * min(max(x / 6 + 0.5, 0), 1)
    case .sqrt: return x.squareRoot()
    case .rsqrt: return 1 / x.squareRoot()
    case .square: return x * x
    case .log: return Foundation.log(x)
    case .softmax, .logSoftmax: fatalError("not element-wise")
    }
}

/// Every activation spec the kernels should support, with non-default parameters too.
let allActivationSpecs: [ActivationSpec] = [
    .linear, .relu, .relu6, ActivationSpec(.relu6),
    ActivationSpec(.relu, alpha: 0.1), ActivationSpec(.relu, alpha: 0.1, maxValue: 4, threshold: 0.5),
    ActivationSpec(.relu, threshold: -0.3), ActivationSpec(.relu, maxValue: 2.5, threshold: 0.25),
    ActivationSpec(.leakyRelu, alpha: 0.2), ActivationSpec(.elu, alpha: 1), ActivationSpec(.elu, alpha: 0.7),
    ActivationSpec(.selu), .sigmoid, ActivationSpec(.hardSigmoid, alpha: 0.2),
    ActivationSpec(.hardSigmoid, alpha: 1.0 / 6.0), .swish, ActivationSpec(.gelu), ActivationSpec(.tanh),
    ActivationSpec(.softplus), ActivationSpec(.softsign), ActivationSpec(.exponential),
    ActivationSpec(.mish), ActivationSpec(.hardSilu),
]

/// |actual - expected| <= rel * |expected| + abs, element-wise; reports the worst element.
@discardableResult
func assertRelClose(_ actual: [Float], _ expected: [Double], rel: Double, abs absTol: Double = 0,
                    inputs: [Float]? = nil, _ message: String = "",
                    file: StaticString = #filePath, line: UInt = #line) -> Bool {
    guard actual.count == expected.count else {
        XCTFail("\(message): count \(actual.count) != \(expected.count)", file: file, line: line)
        return false
    }
    var worst = -1, worstExcess = 0.0
    for i in actual.indices {
        let a = Double(actual[i]), e = expected[i]
        if a == e { continue }                       // also equal infinities
        let excess = Swift.abs(a - e) / (rel * Swift.abs(e) + absTol)
        if excess.isNaN || excess > 1, excess.isNaN || excess > worstExcess || worst < 0 {
            worst = i; worstExcess = excess.isNaN ? .infinity : excess
        }
    }
    if worst >= 0 {
        let input = inputs.map { " at input \($0[worst])" } ?? ""
        XCTFail("\(message): index \(worst)\(input): \(actual[worst]) vs \(expected[worst]) " +
                "(\(worstExcess)x the tolerance)", file: file, line: line)
        return false
    }
    return true
}

extension Array where Element == Float {
    /// Runs `body` on a mutable pointer to a copy of the array's storage and returns it.
    func mutated(_ body: (UnsafeMutablePointer<Float>) -> Void) -> [Float] {
        var copy = self
        copy.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
        return copy
    }
}

/// The kernel instruction sets to test on this machine: the AVX2 kernels always (false), the
/// AVX-512 ones (true) where the CPU has them.
let kernelISAs: [Bool] = {
    if !KernelISA.available { print("note: no AVX-512 on this machine; only the AVX2 kernels are tested") }
    return KernelISA.available ? [false, true] : [false]
}()

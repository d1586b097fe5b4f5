// Eight-lane float math shared by the kernels: loads/stores, min/max, and the transcendental
// functions the activations need (exp, expm1, log1p, tanh, erfc), each within ~1e-7..1e-6
// relative of the exact value over float range.
//
// Why hand-written: Swift's SIMD `clamped`, `rounded`, float<->int conversions and
// `addingProduct` compile to per-lane library calls unless the target CPU has the instruction,
// so everything here is built from +, *, /, compares, selects and integer bit operations, which
// map to single vector instructions. `madd` is the FMA instruction where the build targets a CPU
// with it (KERNEL_FMA, set in Package.swift with -target-cpu haswell), through clang's intrinsic
// (one vfmadd231ps: half the instructions of mul + add, one rounding); elsewhere a multiply then
// an add. Not SIMD8's `addingProduct`: that is a per-lane loop LLVM re-vectorises only partly
// inside long expressions (scalar vfmadd213ss and shuffles appear).
#if KERNEL_FMA
import _Builtin_intrinsics.intel
#endif

/// The vector type of the kernels: one AVX register, or two SSE registers on a baseline build.
typealias Vec = SIMD8<Float>
typealias IVec = SIMD8<Int32>

#if KERNEL_FMA
@inline(__always) func madd(_ a: Vec, _ b: Vec, _ c: Vec) -> Vec { _mm256_fmadd_ps(a, b, c) }
#else
@inline(__always) func madd(_ a: Vec, _ b: Vec, _ c: Vec) -> Vec { a * b + c }
#endif
@inline(__always) func madd(_ a: Vec, _ b: Float, _ c: Vec) -> Vec { madd(a, Vec(repeating: b), c) }
@inline(__always) func madd(_ a: Vec, _ b: Vec, _ c: Float) -> Vec { madd(a, b, Vec(repeating: c)) }
@inline(__always) func madd(_ a: Vec, _ b: Float, _ c: Float) -> Vec { madd(a, Vec(repeating: b), Vec(repeating: c)) }

@inline(__always) func vmax(_ a: Vec, _ b: Vec) -> Vec { a.replacing(with: b, where: a .< b) }
@inline(__always) func vmin(_ a: Vec, _ b: Vec) -> Vec { a.replacing(with: b, where: b .< a) }
@inline(__always) func vmax(_ a: Vec, _ b: Float) -> Vec { vmax(a, Vec(repeating: b)) }
@inline(__always) func vmin(_ a: Vec, _ b: Float) -> Vec { vmin(a, Vec(repeating: b)) }
@inline(__always) func bits(_ v: Vec) -> IVec { unsafeBitCast(v, to: IVec.self) }
@inline(__always) func float(bits v: IVec) -> Vec { unsafeBitCast(v, to: Vec.self) }
@inline(__always) func vabs(_ v: Vec) -> Vec { float(bits: bits(v) & 0x7FFF_FFFF) }

// MARK: loads and stores (unaligned; tensors carry no alignment promise)

@inline(__always) func load(_ p: UnsafePointer<Float>) -> Vec {
    UnsafeRawPointer(p).loadUnaligned(as: Vec.self)
}
@inline(__always) func load(_ p: UnsafeMutablePointer<Float>) -> Vec {
    UnsafeRawPointer(p).loadUnaligned(as: Vec.self)
}
@inline(__always) func store(_ v: Vec, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vec.self)
}
/// The first `n` (< 8) lanes from memory, the others `fill`; used for channel tails.
@inline(__always) func loadPartial(_ p: UnsafePointer<Float>, _ n: Int, fill: Float = 0) -> Vec {
    var v = Vec(repeating: fill)
    for i in 0..<n { v[i] = p[i] }
    return v
}
@inline(__always) func storePartial(_ v: Vec, _ p: UnsafeMutablePointer<Float>, _ n: Int) {
    for i in 0..<n { p[i] = v[i] }
}

// MARK: transcendental functions

/// The range reduction both exponentials share: x clamped to [-87.33, 88.3], n = round(x log2 e),
/// r = x - n ln2 (ln2 split in two for exactness). Returns r and t, which holds n in its low
/// mantissa bits (t = n + 1.5 * 2^23: adding that constant is what rounds x log2 e to an integer).
@inline(__always) func expRangeReduction(_ xIn: Vec) -> (r: Vec, t: Vec) {
    let x = vmin(vmax(xIn, -87.33654), 88.3)
    let magic = Vec(repeating: 12_582_912)
    let t = madd(x, 1.442_695_04, magic)
    let n = t - magic
    var r = madd(n, -0.693_359_375, x)
    r = madd(n, 2.121_944_40e-4, r)
    return (r, t)
}

/// e^x for x clamped to [-87.33, 88.3] (so 2^n stays a normal float): Cephes expf's range
/// reduction x = n ln2 + r (ln2 split in two for exactness), then a polynomial; ~1 ulp.
/// Callers that need exact overflow/underflow at the ends use `expFull`.
@inline(__always) func expClamped(_ xIn: Vec) -> Vec {
    let (r, t) = expRangeReduction(xIn)
    // e^r = 1 + r + r^2 P(r), P of degree 4 fitted (minimax on relative error, |r| <= ln2/2):
    // 6.7e-8 relative in float, one multiply-add shorter than Cephes's degree 5.
    var p = Vec(repeating: 1.381_456_735_543_906_7e-3)
    p = madd(p, r, 8.368_730_545_043_945e-3)
    p = madd(p, r, 4.166_838_899_254_799e-2)
    p = madd(p, r, 1.666_652_113_199_234e-1)
    p = madd(p, r, 4.999_999_403_953_552e-1)
    p = madd(p * r, r, r + 1)
    let scale = float(bits: ((bits(t) &- 0x4B40_0000) &+ 127) &<< 23)
    return p * scale
}

/// e^x for sigmoid and swish, which run on every expanded feature map of EfficientNet and whose
/// cost is the multiply-add pipes: `expClamped`'s range reduction, then a degree-5 polynomial
/// (fitted for relative error, 1.1e-7; 2e-7 evaluated in float) and 2^n added into the exponent
/// field instead of multiplied: two multiply-adds fewer. At n = -126 a result below 2^-126 comes
/// out as a denormal of about the right size (relative error large, absolute below 1e-38): the
/// logistic functions only add it to 1.
@inline(__always) func expForLogistic(_ xIn: Vec) -> Vec {
    let (r, t) = expRangeReduction(xIn)
    var p = Vec(repeating: 8.312_531_746_923_923e-3)
    p = madd(p, r, 4.189_012_572_169_304e-2)
    p = madd(p, r, 1.666_711_419_820_785_5e-1)
    p = madd(p, r, 4.999_923_110_008_24e-1)
    p = madd(p * r, r, r + 1)
    return float(bits: bits(p) &+ ((bits(t) &- 0x4B40_0000) &<< 23))
}

/// e^x over the whole float range: overflow gives +inf, underflow gives denormals then 0.
@inline(__always) func expFull(_ x: Vec) -> Vec {
    let inRange = (x .>= -87.0) .& (x .<= 88.0)
    let half = expClamped(x * 0.5)
    return expClamped(x).replacing(with: half * half, where: .!inRange)
}

/// e^x - 1, accurate near 0 (Taylor to x^8 for |x| < 0.5, where e^x - 1 would cancel).
@inline(__always) func expm1(_ x: Vec) -> Vec {
    var p = Vec(repeating: 1.0 / 40320)
    p = madd(p, x, 1.0 / 5040)
    p = madd(p, x, 1.0 / 720)
    p = madd(p, x, 1.0 / 120)
    p = madd(p, x, 1.0 / 24)
    p = madd(p, x, 1.0 / 6)
    p = madd(p, x, 0.5)
    let small = madd(x * x, p, x)
    return (expClamped(x) - 1).replacing(with: small, where: vabs(x) .< 0.5)
}

/// Natural log of positive, finite w (Cephes logf: mantissa in [sqrt(1/2), sqrt(2)), degree-8
/// polynomial, exponent added back with ln2 split in two).
@inline(__always) func logPositive(_ w: Vec) -> Vec {
    let b = bits(w)
    var e = (b &>> 23) &- 126
    var m = float(bits: (b & 0x007F_FFFF) | 0x3F00_0000)     // in [0.5, 1)
    let low = m .< 0.707_106_781_186_547_5
    e = e.replacing(with: e &- 1, where: low)
    m = (m + m).replacing(with: m, where: .!low) - 1
    let ef = float(bits: e &+ 0x4B40_0000) - 12_582_912       // exact int -> float
    let z = m * m
    var p = Vec(repeating: 7.037_683_629_2e-2)
    p = madd(p, m, -1.151_461_031_0e-1)
    p = madd(p, m, 1.167_699_874_0e-1)
    p = madd(p, m, -1.242_014_084_6e-1)
    p = madd(p, m, 1.424_932_278_7e-1)
    p = madd(p, m, -1.666_805_766_5e-1)
    p = madd(p, m, 2.000_071_476_5e-1)
    p = madd(p, m, -2.499_999_399_3e-1)
    p = madd(p, m, 3.333_333_117_4e-1)
    var y = m * z * p
    y = madd(ef, -2.121_944_40e-4, y)
    y = madd(z, -0.5, y)
    return madd(ef, 0.693_359_375, m + y)
}

/// log(1 + u) for u >= 0, accurate for tiny u: log(w) * u / (w - 1) with w = 1 + u corrects
/// the rounding of w (Goldberg's trick).
@inline(__always) func log1pNonNegative(_ u: Vec) -> Vec {
    let w = u + 1
    let d = w - 1
    let safeD = d.replacing(with: 1, where: d .== 0)
    return (logPositive(w) * (u / safeD)).replacing(with: u, where: d .== 0)
}

/// tanh: odd polynomial for |x| < 0.625 (Cephes tanhf), 1 - 2/(e^{2|x|} + 1) beyond.
@inline(__always) func tanh(_ x: Vec) -> Vec {
    let ax = vabs(x)
    let z = x * x
    var p = Vec(repeating: -5.704_988_727_45e-3)
    p = madd(p, z, 2.063_908_879_54e-2)
    p = madd(p, z, -5.373_971_555_31e-2)
    p = madd(p, z, 1.333_144_220_36e-1)
    p = madd(p, z, -3.333_328_194_22e-1)
    let small = madd(p * z, x, x)
    let e = expClamped(ax + ax)
    let big = 1 - 2 / (e + 1)
    let signed = float(bits: bits(big) | (bits(x) & IVec(repeating: Int32(bitPattern: 0x8000_0000))))
    return signed.replacing(with: small, where: ax .< 0.625)
}

/// Standard normal upper-tail pieces for GELU: returns erfc(|x| / sqrt(2)), accurate relatively
/// in the tail. |x|/sqrt(2) < 1: 1 - erf with erf(t) = t P(t^2) (P least-squares fitted, degree
/// 6). Beyond: erfc(t) = e^{-t^2} h(1/t) / t with h fitted (degree 10) on 1/t in [0.1, 1]; e^{-t^2}
/// = e^{-x^2/2} is computed from x split into 12-bit halves so x^2 carries no rounding error
/// (which e^{-t^2} would otherwise amplify by 2t^2).
@inline(__always) func erfcOfAbsOverSqrt2(_ x: Vec) -> Vec {
    let ax = vabs(x)
    let t = ax * 0.707_106_781_186_547_5
    // Near 0: 1 - erf(t)
    let z = t * t
    var p = Vec(repeating: 7.933_493_907_330_558e-05)
    p = madd(p, z, -0.000_803_484_639_618_545_8)
    p = madd(p, z, 0.005_191_218_573_600_054)
    p = madd(p, z, -0.026_855_399_832_129_48)
    p = madd(p, z, 0.112_836_256_623_268_13)
    p = madd(p, z, -0.376_126_289_367_675_8)
    p = madd(p, z, 1.128_379_225_730_896)
    let near = 1 - p * t
    // Tail: axc in [sqrt(2), 10 sqrt(2)] keeps s = 1/t inside the fitted interval.
    let axc = vmin(vmax(ax, 1.414_213_562_373_095), 14.142_135_623_730_95)
    let s = 1.414_213_562_373_095 / axc
    let u = (s - 0.55) * (1 / 0.45)
    var h = Vec(repeating: -1.648_654_688_324_313_6e-05)
    h = madd(h, u, -2.242_710_070_277_098_6e-05)
    h = madd(h, u, 0.000_177_965_339_389_629_66)
    h = madd(h, u, -0.000_275_890_546_618_029_5)
    h = madd(h, u, 7.992_075_552_465_394e-05)
    h = madd(h, u, 0.000_941_755_948_588_252_1)
    h = madd(h, u, -0.003_974_024_206_399_918)
    h = madd(h, u, 0.008_958_977_647_125_721)
    h = madd(h, u, -0.004_124_046_768_993_139)
    h = madd(h, u, -0.076_515_607_535_839_08)
    h = madd(h, u, 0.502_353_429_794_311_5)
    let hi = float(bits: bits(axc) & IVec(repeating: Int32(bitPattern: 0xFFFF_F000)))
    let lo = axc - hi
    let g = expClamped(hi * hi * -0.5) * expClamped(lo * (axc + hi) * -0.5)
    let tail = (g * h * s).replacing(with: 0, where: ax .> 14.142_135_623_730_95)
    return near.replacing(with: tail, where: t .>= 1)
}

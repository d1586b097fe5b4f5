// Deterministic randomness for the data pipeline: shuffling and augmentation parameters.
//
// Everything random here is a pure function of (seed, stream, epoch, item): no generator state
// is shared between threads or carried from one epoch to the next, so a run restarted at epoch e
// (or at batch b of it) draws exactly what an uninterrupted run drew, and the background loader
// gives the same batches whatever the thread timing. Swift's own `Int.random(in:using:)` is not
// used: its algorithm is not promised to stay the same across Swift versions.

/// SplitMix64 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", 2014).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// The SplitMix64 output function: a bijective 64-bit mixer.
    @inline(__always)
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A Double in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// A Double in [low, high), drawn as numpy's `uniform(low, high)` is: low + (high - low) * u.
    public mutating func uniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * nextUnit()
    }

    /// An integer in 0..<n, unbiased (Lemire's multiply-and-reject).
    public mutating func index(below n: Int) -> Int {
        precondition(n > 0, "index(below:) needs a positive bound")
        let bound = UInt64(n)
        var product = next().multipliedFullWidth(by: bound)
        if product.low < bound {
            let threshold = (0 &- bound) % bound
            while product.low < threshold {
                product = next().multipliedFullWidth(by: bound)
            }
        }
        return Int(product.high)
    }
}

/// Streams of `derivedSeed`, so that shuffling and augmentation never draw the same numbers.
public enum RandomStream: UInt64, Sendable {
    case shuffle = 1
    case augment = 2
    /// The augmentation layers inside a model (RandomFlip, ...), drawn per layer, step and row.
    case augmentLayer = 3
}

/// An independent seed for (seed, stream, parts...): each part is folded in through the SplitMix64
/// mixer, so nearby inputs (epoch 3 vs 4, item 17 vs 18) give unrelated generators.
public func derivedSeed(_ seed: UInt64, _ stream: RandomStream, _ parts: UInt64...) -> UInt64 {
    var h = SplitMix64.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
    h = SplitMix64.mix(h ^ (stream.rawValue &* 0xD1B5_4A32_D192_ED03))
    for p in parts {
        h = SplitMix64.mix((h &+ 0x9E37_79B9_7F4A_7C15) ^ p)
    }
    return h
}

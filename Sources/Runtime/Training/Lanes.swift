// One optimizer formula, two widths: every update kernel is written once, generic over `Lanes`,
// and runs on SIMD8<Float> for the body of each tensor and on Float for its tail. Each lane does
// the same IEEE float32 operations in the same order as the scalar code, so both widths give
// the same bits (tested), and neither uses fused multiply-add (TensorFlow's kernels do not).
import Foundation

protocol Lanes {
    init(splat: Float)
    static func load(_ p: UnsafePointer<Float>) -> Self
    func store(_ p: UnsafeMutablePointer<Float>)
    static func + (a: Self, b: Self) -> Self
    static func - (a: Self, b: Self) -> Self
    static func * (a: Self, b: Self) -> Self
    static func / (a: Self, b: Self) -> Self
    static prefix func - (a: Self) -> Self
    func squareRoot() -> Self
    /// tf.maximum(a, b) for non-NaN inputs.
    static func maximum(_ a: Self, _ b: Self) -> Self
    /// tf.clip_by_value(x, -c, c): minimum(x, c), then maximum(that, -c).
    func clamped(_ c: Self) -> Self
}

extension Lanes {
    @inline(__always) static func load(_ p: UnsafeMutablePointer<Float>) -> Self { load(UnsafePointer(p)) }
}

extension Float: Lanes {
    @inline(__always) init(splat: Float) { self = splat }
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Float { p.pointee }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) { p.pointee = self }
    @inline(__always) static func maximum(_ a: Float, _ b: Float) -> Float { a < b ? b : a }
    @inline(__always) func clamped(_ c: Float) -> Float {
        let t = self < c ? self : c
        return t > -c ? t : -c
    }
}

extension SIMD8: Lanes where Scalar == Float {
    @inline(__always) init(splat: Float) { self.init(repeating: splat) }
    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }
    @inline(__always) func store(_ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: self, as: SIMD8<Float>.self)
    }
    @inline(__always) static func maximum(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
        a.replacing(with: b, where: a .< b)
    }
    @inline(__always) func clamped(_ c: SIMD8<Float>) -> SIMD8<Float> {
        let t = replacing(with: c, where: c .< self)
        return t.replacing(with: -c, where: t .<= -c)
    }
}

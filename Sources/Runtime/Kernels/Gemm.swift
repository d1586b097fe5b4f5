// The only file that imports CBLAS: every matrix product in Runtime goes through `sgemm` here.
//
// Layout: row-major. C[m, n] = alpha * A[m, k] * B[k, n] + beta * C, with leading dimensions
// (elements between consecutive rows) lda, ldb, ldc; `transA`/`transB` read A or B as their
// transposes (then A is stored [k, m], B is stored [n, k]).
import CBLAS

/// Row-major single-precision matrix product through OpenBLAS.
/// - Parameters: `m`, `n`, `k` are the logical sizes of op(A) [m, k] and op(B) [k, n].
@inline(__always)
public func sgemm(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int, transA: Bool = false,
    b: UnsafePointer<Float>, ldb: Int, transB: Bool = false,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    alpha: Float = 1, beta: Float = 0
) {
    guard m > 0, n > 0 else { return }
    _ = RuntimeThreads.blasPinned      // OpenBLAS single-threaded before its first product
    if k == 0 {
        // BLAS would scale C by beta; do the same without calling it.
        for i in 0..<m {
            let row = c + i * ldc
            for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] }
        }
        return
    }
    cblas_sgemm(CblasRowMajor,
                transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha,
                a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
}

/// Sets OpenBLAS's own worker-thread count (process-wide, as OpenBLAS keeps it).
/// Use `RuntimeThreads.set` rather than calling this directly.
func setBLASThreads(_ n: Int) {
    openblas_set_num_threads(Int32(max(1, n)))
}

/// OpenBLAS's current worker-thread count.
func blasThreads() -> Int { Int(openblas_get_num_threads()) }

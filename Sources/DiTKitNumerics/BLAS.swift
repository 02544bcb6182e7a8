// The only place DiTKit talks to BLAS: float32 matrix products through OpenBLAS `cblas_sgemm`.
import COpenBLAS

/// Row-major matrix products.
public enum Gemm {
    /// `C[M,N] = alpha * op(A) * op(B) + beta * C`, all row-major. `op(A)` is `[M,K]`
    /// (A stored `[K,M]` when `transA`), `op(B)` is `[K,N]` (B stored `[N,K]` when `transB`).
    /// Wraps `cblas_sgemm(CblasRowMajor, ...)`.
    @inlinable
    public static func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                                m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                                alpha: Float = 1, beta: Float = 0, lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda ?? (transA ? m : k)),
                    b, blasint(ldb ?? (transB ? k : n)), beta, c, blasint(ldc ?? n))
    }

    /// Threads OpenBLAS uses (`openblas_get_num_threads`).
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Sets OpenBLAS's thread count (`openblas_set_num_threads`).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}

// The only place DiTKit talks to BLAS: float32 matrix products through OpenBLAS `cblas_sgemm`.
import COpenBLAS

/// Row-major matrix products.
public enum Gemm {
    /// `C[M,N] = alpha * op(A) * op(B) + beta * C`, all row-major. `op(A)` is `[M,K]`
    /// (A stored `[K,M]` when `transA`), `op(B)` is `[K,N]` (B stored `[N,K]` when `transB`).
    /// Wraps `cblas_sgemm(CblasRowMajor, ...)`, or `cblas_sgemv` when `op(A)` is one row.
    @inlinable
    public static func multiply(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
                                m: Int, n: Int, k: Int, transA: Bool = false, transB: Bool = false,
                                alpha: Float = 1, beta: Float = 0, lda: Int? = nil, ldb: Int? = nil, ldc: Int? = nil) {
        guard m > 0, n > 0 else { return }
        if m == 1, !transA, k > 0 {
            // One row (a batch-1 modulation or embedding layer): a matrix-vector product reads the
            // weight once, where sgemm would first pack all of it.
            if transB {   // C[n] = sum_k B[n, k] A[k]: B is [N, K]
                cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), alpha, b, blasint(ldb ?? k), a, 1, beta, c, 1)
            } else {      // C[n] = sum_k A[k] B[k, n]: B is [K, N]
                cblas_sgemv(CblasRowMajor, CblasTrans, blasint(k), blasint(n), alpha, b, blasint(ldb ?? n), a, 1, beta, c, 1)
            }
            return
        }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda ?? (transA ? m : k)),
                    b, blasint(ldb ?? (transB ? k : n)), beta, c, blasint(ldc ?? n))
    }

    /// Threads OpenBLAS uses (`openblas_get_num_threads`).
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Sets OpenBLAS's thread count (`openblas_set_num_threads`).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}

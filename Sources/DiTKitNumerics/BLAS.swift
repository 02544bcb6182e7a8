// The only place DiTKit talks to BLAS: float32 matrix products through OpenBLAS `cblas_sgemm`.
import COpenBLAS
#if canImport(Glibc)
import Glibc
#endif

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

    /// Runs `body(workers)` with OpenBLAS single-threaded, `workers` being the thread count it had
    /// before: the caller runs that many products of its own side by side, each on one thread,
    /// where many small products on OpenBLAS's threads would each wait for the slowest half.
    /// OpenBLAS's count is process-wide, so callers that overlap share one section: the first
    /// sets one thread, the last to leave restores the count the first found.
    public static func oneThreadEach<R>(_ body: (Int) throws -> R) rethrows -> R {
        let workers = SingleThreadSection.shared.enter()
        defer { SingleThreadSection.shared.leave() }
        return try body(workers)
    }
}

/// The bookkeeping behind `Gemm.oneThreadEach`.
private final class SingleThreadSection: @unchecked Sendable {
    static let shared = SingleThreadSection()
    private var mutex = pthread_mutex_t()
    private var inside = 0, saved = 1
    private init() { pthread_mutex_init(&mutex, nil) }

    /// Enters the section and returns the thread count OpenBLAS had outside it.
    func enter() -> Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        if inside == 0 {
            saved = max(1, Gemm.threads)
            if saved > 1 { Gemm.setThreads(1) }
        }
        inside += 1
        return saved
    }

    func leave() {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        inside -= 1
        if inside == 0, saved > 1 { Gemm.setThreads(saved) }
    }
}

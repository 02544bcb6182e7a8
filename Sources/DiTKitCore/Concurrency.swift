// Small thread-safe helpers for parallel loops.
#if canImport(Glibc)
import Glibc
#endif

/// A counter that hands out 0, 1, 2, ... to concurrent workers.
public final class AtomicCounter: @unchecked Sendable {
    private var value = 0
    private var mutex = pthread_mutex_t()
    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    /// Returns the current value and increments it.
    public func increment() -> Int {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        let v = value
        value += 1
        return v
    }
}

/// Holds the first error thrown by any worker.
public final class ErrorBox: @unchecked Sendable {
    private var stored: (any Error)?
    private var mutex = pthread_mutex_t()
    public init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    public func set(_ e: any Error) {
        pthread_mutex_lock(&mutex)
        if stored == nil { stored = e }
        pthread_mutex_unlock(&mutex)
    }
    public var error: (any Error)? {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return stored
    }
    public var hasError: Bool { error != nil }
}

/// Processor count without Foundation.
public enum ProcessInfoLite {
    /// Online processors (at least 1).
    public static var activeProcessorCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

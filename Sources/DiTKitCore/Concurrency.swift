// Small thread-safe helpers for parallel loops.
#if canImport(Glibc)
import Glibc
#endif
import Dispatch

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

/// A value behind a mutex.
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private var mutex = pthread_mutex_t()
    public init(_ value: Value) {
        self.value = value
        pthread_mutex_init(&mutex, nil)
    }
    deinit { pthread_mutex_destroy(&mutex) }
    /// Runs `body` with exclusive access to the value.
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return try body(&value)
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

/// Runs `body(i)` for every `i` in `0..<count` on up to `workers` threads and returns the results
/// in index order. Work is handed out in `order` (e.g. largest first, so the threads finish
/// together).
public func parallelMap<T>(_ count: Int, workers: Int = ProcessInfoLite.activeProcessorCount, order: [Int]? = nil,
                           _ body: (Int) -> T) -> [T] {
    parallelSlots(count, workers: workers, order: order, stop: nil, body).compactMap { $0 }
}

/// `parallelMap` for a body that throws: the first error stops the hand-out of further work and
/// is rethrown once every thread has returned.
public func parallelMap<T>(_ count: Int, workers: Int = ProcessInfoLite.activeProcessorCount, order: [Int]? = nil,
                           _ body: (Int) throws -> T) throws -> [T] {
    let errors = ErrorBox()
    let slots = parallelSlots(count, workers: workers, order: order, stop: errors) { i -> T? in
        do { return try body(i) } catch { errors.set(error); return nil }
    }
    if let e = errors.error { throw e }
    return slots.compactMap { $0 }
}

/// The results live in a Swift array (each thread writes distinct slots), so they are released
/// like any array: no manual deinitialisation to forget.
private func parallelSlots<T>(_ count: Int, workers: Int, order: [Int]?, stop: ErrorBox?, _ body: (Int) -> T?) -> [T?] {
    var slots = [T?](repeating: nil, count: count)
    let next = AtomicCounter()
    let threads = max(1, min(workers, count))
    withoutActuallyEscaping(body) { body in
        slots.withUnsafeMutableBufferPointer { out in
            DispatchQueue.concurrentPerform(iterations: threads) { _ in
                while true {
                    let k = next.increment()
                    if k >= count || stop?.hasError == true { return }
                    let i = order?[k] ?? k
                    out[i] = body(i)
                }
            }
        }
    }
    return slots
}

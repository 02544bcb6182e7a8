// Progress reporting for long work. Libraries report; the command line decides how to show it.

/// Receives progress of a long operation. All methods may be called from any thread.
public protocol ProgressReporter: AnyObject, Sendable {
    /// Starts a phase of `total` units (bytes, tensors, steps) named `label`.
    func begin(_ label: String, total: Int, unit: ProgressUnit)
    /// Advances the current phase by `units`.
    func advance(_ units: Int)
    /// Ends the current phase.
    func finish()
}

/// What the units of a phase count.
public enum ProgressUnit: Sendable {
    case bytes, items, steps
}

/// A reporter that ignores everything.
public final class SilentProgress: ProgressReporter, @unchecked Sendable {
    public init() {}
    public func begin(_ label: String, total: Int, unit: ProgressUnit) {}
    public func advance(_ units: Int) {}
    public func finish() {}
}

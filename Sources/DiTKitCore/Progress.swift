// Progress reporting for long work. Libraries report; the command line decides how to show it.

/// Receives progress of a long operation. All methods may be called from any thread.
public protocol ProgressReporter: AnyObject, Sendable {
    /// Starts a phase of `total` units (bytes, tensors, steps) named `label`.
    func begin(_ label: String, total: Int, unit: ProgressUnit)
    /// Advances the current phase by `units`.
    func advance(_ units: Int)
    /// Ends the current phase.
    func finish()
    /// Starts a phase of which `done` units are already done (a resumed download's bytes on
    /// disk): they count towards the phase but were not done now (a rate leaves them out).
    func begin(_ label: String, total: Int, unit: ProgressUnit, done: Int)
}

extension ProgressReporter {
    /// Begins the phase and advances it by `done`.
    public func begin(_ label: String, total: Int, unit: ProgressUnit, done: Int) {
        begin(label, total: total, unit: unit)
        if done > 0 { advance(done) }
    }
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

/// A reporter that names the run its phases belong to: `begin("sampling", …)` becomes
/// `begin("source: sampling", …)`, so two runs of the same phases (the source and the converted
/// model of `verify --sample`) are told apart.
public final class LabelledProgress: ProgressReporter, @unchecked Sendable {
    private let prefix: String
    private let inner: ProgressReporter

    public init(_ prefix: String, _ inner: ProgressReporter) {
        self.prefix = prefix
        self.inner = inner
    }

    public func begin(_ label: String, total: Int, unit: ProgressUnit) { inner.begin("\(prefix): \(label)", total: total, unit: unit) }
    public func begin(_ label: String, total: Int, unit: ProgressUnit, done: Int) {
        inner.begin("\(prefix): \(label)", total: total, unit: unit, done: done)
    }
    public func advance(_ units: Int) { inner.advance(units) }
    public func finish() { inner.finish() }
}

/// One line of a progress bar: `label ███░░ 60% 1.20 MB/2.00 MB 400.00 kB/s ETA 2s`.
public struct ProgressLine: Sendable, Equatable {
    public var label: String
    public var total: Int
    public var unit: ProgressUnit
    /// Units already done when the phase began (a resumed download's bytes on disk): shown in the
    /// amount, left out of the rate and the ETA.
    public var base: Int

    public init(label: String, total: Int, unit: ProgressUnit, base: Int = 0) {
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.base = base
    }

    /// The line after `done` units (counting `base`) in `elapsed` seconds since the phase began.
    public func render(done: Int, elapsed: Double, width: Int = 30) -> String {
        let fraction = min(1, max(0, Double(done) / Double(total)))
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let rate = Double(max(0, done - base)) / max(1e-6, elapsed)
        let eta = rate > 0 ? Double(max(0, total - done)) / rate : 0
        let amount: String
        switch unit {
        case .bytes: amount = "\(NumberFormat.bytes(done))/\(NumberFormat.bytes(total)) \(NumberFormat.bytes(Int(rate)))/s"
        case .items: amount = "\(done)/\(total)"
        case .steps: amount = "\(done)/\(total) steps \(NumberFormat.fixed(rate, 2)) steps/s"
        }
        return "\(label) \(bar) \(Int(fraction * 100))% \(amount) ETA \(Int(eta.rounded()))s"
    }
}

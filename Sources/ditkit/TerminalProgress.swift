// A progress bar on stderr, drawn only when stderr is a terminal.
import DiTKitCore
#if canImport(Glibc)
import Glibc
#endif

final class TerminalProgress: ProgressReporter, @unchecked Sendable {
    private var label = ""
    private var total = 0
    private var done = 0
    private var unit: ProgressUnit = .bytes
    private var started = ContinuousClock.now
    private var lastDraw = ContinuousClock.now
    private var mutex = pthread_mutex_t()
    private let enabled: Bool

    /// A reporter that draws when stderr is a terminal and stays silent otherwise.
    init(enabled: Bool = stderrIsTerminal) {
        self.enabled = enabled
        pthread_mutex_init(&mutex, nil)
    }

    func begin(_ label: String, total: Int, unit: ProgressUnit) {
        pthread_mutex_lock(&mutex)
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        done = 0
        started = .now
        pthread_mutex_unlock(&mutex)
        draw(force: true)
    }

    func advance(_ units: Int) {
        pthread_mutex_lock(&mutex)
        done += units
        pthread_mutex_unlock(&mutex)
        draw(force: false)
    }

    func finish() {
        draw(force: true)
        if enabled { fputs("\n", stderr) }
    }

    private func draw(force: Bool) {
        guard enabled else { return }
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        let now = ContinuousClock.now
        if !force && now - lastDraw < .milliseconds(100) { return }
        lastDraw = now
        let elapsed = max(1e-6, seconds(now - started))
        let fraction = min(1, Double(done) / Double(total))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let rate = Double(done) / elapsed
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let amount: String
        switch unit {
        case .bytes: amount = "\(humanBytes(done))/\(humanBytes(total)) \(humanBytes(Int(rate)))/s"
        case .items: amount = "\(done)/\(total)"
        case .steps: amount = "\(done)/\(total) steps \(fixed(rate, 2)) steps/s"
        }
        fputs("\r\u{1B}[2K\(label) \(bar) \(Int(fraction * 100))% \(amount) ETA \(Int(eta.rounded()))s", stderr)
    }
}

/// Seconds in a duration.
func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

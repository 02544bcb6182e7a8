// A progress bar on stderr, drawn only when stderr is a terminal (or when DITKIT_PROGRESS=1 asks).
import DiTKitCore
#if canImport(Glibc)
import Glibc
#endif

final class TerminalProgress: ProgressReporter, @unchecked Sendable {
    private var line = ProgressLine(label: "", total: 1, unit: .bytes)
    private var done = 0
    private var started = ContinuousClock.now
    private var lastDraw = ContinuousClock.now
    private var open = false
    private var mutex = pthread_mutex_t()
    private let enabled: Bool

    /// A reporter that draws when progress is shown (`progressShown`) and stays silent otherwise.
    init(enabled: Bool = progressShown) {
        self.enabled = enabled
        pthread_mutex_init(&mutex, nil)
    }

    func begin(_ label: String, total: Int, unit: ProgressUnit) { begin(label, total: total, unit: unit, done: 0) }

    /// Begins a phase of which `done` units are already done (a resumed download): they count
    /// towards the bar but not towards the rate.
    func begin(_ label: String, total: Int, unit: ProgressUnit, done: Int) {
        pthread_mutex_lock(&mutex)
        line = ProgressLine(label: label, total: total, unit: unit, base: done)
        self.done = done
        started = .now
        open = true
        pthread_mutex_unlock(&mutex)
        draw(force: true)
    }

    func advance(_ units: Int) {
        pthread_mutex_lock(&mutex)
        done += units
        pthread_mutex_unlock(&mutex)
        draw(force: false)
    }

    /// Draws the last state of the bar and ends its line, so what is printed next starts on a
    /// line of its own. Does nothing when no phase is open.
    func finish() {
        draw(force: true)
        pthread_mutex_lock(&mutex)
        let wasOpen = open
        open = false
        pthread_mutex_unlock(&mutex)
        if enabled && wasOpen { fputs("\n", stderr) }
    }

    private func draw(force: Bool) {
        guard enabled else { return }
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        guard open else { return }
        let now = ContinuousClock.now
        if !force && now - lastDraw < .milliseconds(100) { return }
        lastDraw = now
        fputs("\r\u{1B}[2K" + line.render(done: done, elapsed: seconds(now - started)), stderr)
    }
}

/// Seconds in a duration.
func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

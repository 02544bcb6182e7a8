// Error reporting and terminal helpers shared by the subcommands.
import ArgumentParser
import DiTKitCore
#if canImport(Glibc)
import Glibc
#endif

/// Exit statuses of every `ditkit` command.
enum Exit {
    static let mismatch = ExitCode(1)
    static let refused = ExitCode(2)
    static let usage = ExitCode(64)
    static let environment = ExitCode(74)
}

/// Prints a line to standard error.
func printError(_ line: String) {
    var s = line
    if !s.hasSuffix("\n") { s += "\n" }
    fputs(s, stderr)
}

/// Runs a command body, turning library errors into one line on stderr and an exit status.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        printError("ditkit: error: \(error)")
        let kind = (error as? ClassifiedError)?.kind ?? .refusedInput
        switch kind {
        case .refusedInput: throw Exit.refused
        case .mismatch: throw Exit.mismatch
        case .environment: throw Exit.environment
        }
    }
}

/// Whether standard error is a terminal (progress bars are drawn only then).
var stderrIsTerminal: Bool { isatty(2) != 0 }

/// Formats a byte count for people (`2.70 GB`).
func humanBytes(_ n: Int) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"]
    var v = Double(n)
    var u = 0
    while v >= 1000 && u < units.count - 1 { v /= 1000; u += 1 }
    return u == 0 ? "\(n) B" : String(format2(v)) + " " + units[u]
}

/// Two decimals without Foundation.
func format2(_ v: Double) -> String { fixed(v, 2) }

/// `v` with `digits` decimals.
func fixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return v.isNaN ? "nan" : (v < 0 ? "-inf" : "inf") }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (abs(v) * p).rounded()
    let whole = Int(r / p)
    var frac = String(Int(r.truncatingRemainder(dividingBy: p)))
    while frac.count < digits { frac = "0" + frac }
    let sign = v < 0 && r != 0 ? "-" : ""
    return digits == 0 ? sign + String(whole) : sign + String(whole) + "." + frac
}

/// Writes a string to standard output without a trailing newline being added.
func writeOut(_ s: String) { fputs(s, stdout) }

/// `v` in scientific notation with `digits` decimals (`2.43e-04`).
func scientific(_ v: Double, _ digits: Int = 2) -> String {
    guard v.isFinite, v != 0 else { return v == 0 ? "0" : fixed(v, digits) }
    var e = Int((log10(abs(v))).rounded(.down))
    var m = v / pow(10, Double(e))
    if abs((m * pow(10, Double(digits))).rounded()) >= 10 * pow(10, Double(digits)) { m /= 10; e += 1 }
    return fixed(m, digits) + "e" + (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
}

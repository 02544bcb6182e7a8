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

/// A usage mistake found after the arguments were parsed (e.g. a class id the model does not
/// have): one line, exit 64.
struct UsageError: Error, CustomStringConvertible, ClassifiedError {
    let description: String
    init(_ message: String) { description = message }
    var kind: ErrorKind { .usage }
}

/// Prints one line to standard error. Control characters inside it (from a file's contents, in an
/// error message) are escaped, so the line can neither drive the terminal nor become several lines.
func printError(_ line: String) {
    var s = line
    if s.hasSuffix("\n") { s.removeLast() }
    fputs(TerminalText.escaped(s) + "\n", stderr)
}

/// Runs a command body, turning library errors into one line on stderr and an exit status.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        let result = try body()
        // A mapped input that shrank meanwhile was read as zeros: nothing computed from it stands.
        if MappedFile.pagesLostInProcess > 0 {
            printError("ditkit: error: an input file shrank while it was being read (\(MappedFile.pagesLostInProcess) pages read as zeros); the results above are void")
            throw Exit.refused
        }
        return result
    } catch let e as ExitCode {
        throw e
    } catch {
        printError("ditkit: error: \(error)")
        throw exitStatus(of: error)
    }
}

/// The exit status an error maps to (errors that do not say count as refused input).
func exitStatus(of error: Error) -> ExitCode {
    switch (error as? ClassifiedError)?.kind ?? .refusedInput {
    case .refusedInput: return Exit.refused
    case .mismatch: return Exit.mismatch
    case .environment: return Exit.environment
    case .usage: return Exit.usage
    }
}

/// Whether progress bars are drawn on standard error: when it is a terminal, unless the
/// environment says otherwise (`DITKIT_PROGRESS=1` draws them anywhere, e.g. into a log or a
/// test's pipe; `DITKIT_PROGRESS=0` never).
var progressShown: Bool {
    switch getenv("DITKIT_PROGRESS").map({ String(cString: $0) }) {
    case "1": return true
    case "0": return false
    default: return isatty(2) != 0
    }
}

/// Formats a byte count for people (`2.70 GB`).
func humanBytes(_ n: Int) -> String { NumberFormat.bytes(n) }

/// `v` with `digits` decimals.
func fixed(_ v: Double, _ digits: Int) -> String { NumberFormat.fixed(v, digits) }

/// Writes a string to standard output without a trailing newline being added. Control characters
/// other than line breaks are escaped (names and values from files are escaped where they are
/// laid out; this keeps anything that slipped through from driving the terminal).
func writeOut(_ s: String) { fputs(TerminalText.escaped(s, keepingNewlines: true), stdout) }

/// `v` in scientific notation with `digits` decimals (`2.43e-04`).
func scientific(_ v: Double, _ digits: Int = 2) -> String { NumberFormat.scientific(v, digits) }

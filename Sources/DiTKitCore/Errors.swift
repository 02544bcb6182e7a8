// The error shared by every module to attach the file an error is about.

/// How an error maps to the command line's exit status.
public enum ErrorKind: Sendable {
    /// The input was refused: unsafe, corrupt or unsupported (exit 2).
    case refusedInput
    /// A check ran and found a mismatch (exit 1).
    case mismatch
    /// The tool could not write its output or use the system (exit 74).
    case environment
    /// The options asked for something impossible or contradictory, or an output path is taken
    /// by something `--force` may not replace (exit 64).
    case usage
}

/// An error that says which kind of failure it is. Errors that do not conform count as refused input.
public protocol ClassifiedError: Error {
    var kind: ErrorKind { get }
}

/// An error about a particular file: prints as `PATH: message`.
public struct FileError: Error, CustomStringConvertible, ClassifiedError {
    public let path: String
    public let underlying: any Error

    public init(path: String, _ underlying: any Error) {
        self.path = path
        self.underlying = underlying
    }

    public var kind: ErrorKind {
        if let c = underlying as? ClassifiedError { return c.kind }
        if underlying is OutputError { return .environment }
        return .refusedInput
    }

    public var description: String {
        let inner = String(describing: underlying)
        // Do not repeat the path when the underlying error already starts with it.
        return inner.hasPrefix(path + ":") ? inner : "\(path): \(inner)"
    }

    /// Runs `body`, wrapping any error (once) with `path`.
    public static func wrapping<T>(_ path: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let e as FileError { throw e } catch { throw FileError(path: path, error) }
    }
}

extension OutputError: ClassifiedError {
    public var kind: ErrorKind {
        switch self {
        case .exists, .notReplaceable: return .usage
        default: return .environment
        }
    }
}

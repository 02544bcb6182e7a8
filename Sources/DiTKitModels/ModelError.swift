// Errors about model structure: detection, strict loading, configuration.
import DiTKitCore

/// Why weights do not make a model DiTKit knows.
public enum ModelError: Error, CustomStringConvertible, Sendable {
    case notRecognised(String)
    case mismatch(model: String, missing: [String], unexpected: [String], shapes: [String])
    case inconsistent(String)
    case needsOption(String)
    case badConfiguration(String)

    public var description: String {
        switch self {
        case .notRecognised(let s): return s
        case let .mismatch(model, missing, unexpected, shapes):
            var parts: [String] = []
            func list(_ xs: [String]) -> String {
                xs.count <= 8 ? xs.joined(separator: ", ") : xs.prefix(8).joined(separator: ", ") + ", … (\(xs.count - 8) more)"
            }
            if !missing.isEmpty { parts.append("\(missing.count) missing (\(list(missing)))") }
            if !unexpected.isEmpty { parts.append("\(unexpected.count) unexpected (\(list(unexpected)))") }
            if !shapes.isEmpty { parts.append("\(shapes.count) with the wrong shape (\(list(shapes)))") }
            return "weights do not match \(model): " + parts.joined(separator: "; ")
        case .inconsistent(let s): return s
        case .needsOption(let s): return s
        case .badConfiguration(let s): return "invalid configuration: \(s)"
        }
    }
}

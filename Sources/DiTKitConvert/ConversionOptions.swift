// What `ditkit convert` can be asked to do.
import DiTKitCore
import DiTKitFormats
import DiTKitModels

/// The storage type of a bundle.
public enum StorageType: String, Sendable, CaseIterable {
    case f32, f16, bf16, int8

    /// A storage type from any usual spelling, case-insensitive: `f32`/`fp32`/`float32`/`float`,
    /// `f16`/`fp16`/`float16`/`half`, `bf16`/`bfloat16`, `int8`/`i8` (so the `F16` DiTKit prints works too).
    public init?(spelling: String) {
        switch spelling.lowercased() {
        case "f32", "fp32", "float32", "float": self = .f32
        case "f16", "fp16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "int8", "i8": self = .int8
        default: return nil
        }
    }

    /// The dtype float tensors get (int8 bundles keep non-quantized tensors in F32).
    public var floatDType: DType {
        switch self {
        case .f32, .int8: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        }
    }
}

/// Options of one conversion.
public struct ConversionOptions: Sendable {
    public var dtype: StorageType = .f32
    public var hints = DetectionHints()
    /// Glob patterns (`*`, `?`) of canonical tensor names to keep in F32.
    public var keep: [String] = []
    /// Convert sources holding NaN or infinite values (recorded per tensor) instead of refusing them.
    public var allowNonfinite = false
    public var force = false
    public var alignment = BundleManifest.defaultAlignment
    /// The zoo entry this conversion belongs to, recorded in provenance.
    public var zooEntry: String?
    /// Worker threads (default: every core).
    public var threads = ProcessInfoLite.activeProcessorCount

    public init() {}
}

/// Why a conversion stopped.
public enum ConvertError: Error, CustomStringConvertible, Sendable {
    case overflow([(name: String, count: Int)], dtype: String)
    case nonFinite([(name: String, count: Int)])
    case nonFiniteInt8(name: String, count: Int, dtype: String)
    case foldMismatch(String, String)
    case sourceIsBundle
    case duplicateOutput(String)
    /// `--keep` patterns that match no tensor of the model (a typo would silently keep nothing).
    case keepMatchesNothing([String], model: String, example: String)

    public var description: String {
        switch self {
        case let .overflow(list, dtype):
            let items = list.map { "\($0.name) (\(NumberFormat.counted($0.count, "value")))" }.joined(separator: ", ")
            return "\(list.count) tensor\(list.count == 1 ? "" : "s") would overflow to infinity in \(dtype): \(items); keep them in float32 with --keep PATTERN"
        case .nonFinite(let list):
            let items = list.map { "\($0.name) (\($0.count) value\($0.count == 1 ? "" : "s"))" }.joined(separator: ", ")
            return "\(list.count) tensor\(list.count == 1 ? " holds" : "s hold") NaN or infinite values: \(items); a trained model has none, so the file is probably damaged; convert it anyway with --allow-nonfinite"
        case let .nonFiniteInt8(name, count, dtype):
            return "\(name) holds \(count) NaN or infinite value\(count == 1 ? "" : "s"), which \(dtype) cannot store; keep it in float32 with --keep '\(name)'"
        case let .foldMismatch(a, b):
            return "embedder copies '\(a)' and '\(b)' differ; diffusers stores identical copies in every block"
        case .sourceIsBundle:
            return "already a DiTKit bundle; use `ditkit export` to write it in another format"
        case .duplicateOutput(let n):
            return "two sources would both be written to \(n); convert them into different directories"
        case let .keepMatchesNothing(patterns, model, example):
            let list = patterns.map { "'\($0)'" }.joined(separator: ", ")
            return "--keep \(list) match\(patterns.count == 1 ? "es" : "") no tensor of \(model) (canonical names look like '\(example)'; `ditkit inspect` on a converted bundle lists them)"
        }
    }
}

extension ConvertError: ClassifiedError {
    public var kind: ErrorKind {
        switch self {
        case .keepMatchesNothing, .duplicateOutput: return .usage
        default: return .refusedInput
        }
    }
}

extension ConversionSummary {
    /// The summary as JSON (`ditkit convert --json`): the output, the model, the source, counts,
    /// sizes, and every lossy tensor with its error figures (as in the manifest).
    public var json: JSONValue {
        .object([
            ("output", .string(output)),
            ("model", .object([("family", .string(family)), ("variant", .string(variant))])),
            ("dtype", .string(dtype.rawValue)),
            ("source", .object([("file", .string(sourcePath)), ("naming", .string(sourceNaming)), ("subtree", .string(subtree))])),
            ("tensors", .int(tensors)),
            ("stored_types", .object(storedTypes.map { ($0.0.name, .int($0.1)) })),
            ("parameters", .int(parameters)),
            ("bytes_in", .int(bytesIn)),
            ("bytes_out", .int(bytesOut)),
            ("seconds", .double(seconds)),
            ("lossy", .array(lossy.map { .object([("name", .string($0.name)), ("error", $0.error.json)]) })),
            ("nonfinite", .array(nonFinite.map { .object([("name", .string($0.name)), ("count", .int($0.count))]) })),
        ])
    }
}

/// What a conversion did.
public struct ConversionSummary: Sendable {
    /// The source file as given.
    public var sourcePath: String
    public var output: String
    public var variant: String
    public var family: String
    public var sourceNaming: String
    public var subtree: String
    public var dtype: StorageType
    public var tensors: Int
    public var parameters: Int
    public var bytesIn: Int
    public var bytesOut: Int
    public var seconds: Double
    /// Stored dtype -> tensor count.
    public var storedTypes: [(DType, Int)]
    /// Lossy tensors and their error figures, canonical order.
    public var lossy: [(name: String, error: ConversionError)]
    /// Tensors whose source holds NaN or infinite values (kept with `allowNonfinite`), canonical order.
    public var nonFinite: [(name: String, count: Int)] = []
}

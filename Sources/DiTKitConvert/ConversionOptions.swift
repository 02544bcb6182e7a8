// What `ditkit convert` can be asked to do.
import DiTKitCore
import DiTKitFormats
import DiTKitModels

/// The storage type of a bundle.
public enum StorageType: String, Sendable, CaseIterable {
    case f32, f16, bf16, int8
    /// ggml block types: the family's policy (`BlockPolicy`) chooses the tensors they hold; the
    /// others keep their source type losslessly.
    case q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k
    /// Every tensor in its source type, losslessly: F32, F16, BF16 and block types as stored
    /// (a GGUF file's blocks verbatim), float8 as F16, F64 as F32.
    case source
    /// Block types chosen per tensor by a fidelity budget (`ConversionOptions.auto`, AutoPrecision.swift).
    case auto

    /// A storage type from any usual spelling, case-insensitive: `f32`/`fp32`/`float32`/`float`,
    /// `f16`/`fp16`/`float16`/`half`, `bf16`/`bfloat16`, `int8`/`i8`, the block types as ggml
    /// spells them (`q4_k`, `Q4_K`), `source` (so the `F16` or `Q4_K` DiTKit prints works too).
    public init?(spelling: String) {
        switch spelling.lowercased() {
        case "f32", "fp32", "float32", "float": self = .f32
        case "f16", "fp16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        case "int8", "i8": self = .int8
        default:
            guard let t = StorageType(rawValue: spelling.lowercased()) else { return nil }
            self = t
        }
    }

    /// The ggml block type of a block storage type; nil for the others.
    public var blockType: DType? {
        switch self {
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .q5_0: return .q5_0
        case .q5_1: return .q5_1
        case .q2_k: return .q2_K
        case .q3_k: return .q3_K
        case .q4_k: return .q4_K
        case .q5_k: return .q5_K
        case .q6_k: return .q6_K
        default: return nil
        }
    }

    /// The storage type that stores `type` (a block type).
    public init?(blockType type: DType) {
        guard let s = StorageType.allCases.first(where: { $0.blockType == type }) else { return nil }
        self = s
    }

    /// The dtype float tensors get (int8 bundles keep non-quantized tensors in F32); nil when it
    /// depends on the tensor (block types and `source` keep each tensor's source type).
    public var floatDType: DType? {
        switch self {
        case .f32, .int8: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: return nil
        }
    }
}

/// The type a tensor keeps when it is not quantized into a block type (or with `--dtype source`):
/// its source type when a bundle can hold it losslessly, else the nearest lossless one.
public enum LosslessKeep {
    /// F32, F16, BF16 and block types stay; float8 becomes F16 (every finite float8 value is a
    /// float16 value); F64 becomes F32 (rounded, measured); anything else F32. Parts of mixed types
    /// become F32. A block type stays only when the tensor's last dimension is the source's (its
    /// blocks still run along rows of the same length).
    public static func dtype(sources: [TensorEntry], shape: [Int]) -> DType {
        guard let first = sources.first, sources.allSatisfy({ $0.dtype == first.dtype }) else { return .f32 }
        switch first.dtype {
        case .f32, .f16, .bf16: return first.dtype
        case .f8e4m3, .f8e5m2: return .f16
        case let d where d.block != nil:
            return sources.allSatisfy({ $0.shape.last == shape.last }) && (try? d.byteCount(shape: shape)) != nil ? d : .f32
        default: return .f32
        }
    }
}

/// Options of one conversion.
public struct ConversionOptions: Sendable {
    /// The storage type; nil: `source` for a GGUF file (or any source holding block types), else `f32`.
    public var dtype: StorageType?
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
    /// Where SHA-256s of whole source files are remembered (nil: none; the command line uses
    /// `FileDigests.standard`). A source whose SHA-256 is remembered for its present version is not
    /// read for its hash; every hash made is remembered.
    public var digests: FileDigests?
    /// Hash the source files even when their SHA-256 is remembered.
    public var rehash = false
    /// Wait for the bundle to reach stable storage before it is moved into place (`fsync`); false
    /// moves it into place as soon as it is written, as `cp` does (`BundleWriter.durable`).
    public var durable = true
    /// Block types and `.auto`: the type of the kept float tensors (F16, BF16 or F32); nil: each keeps
    /// its source type losslessly (`LosslessKeep`). Block-typed sources stay verbatim either way.
    public var keepDType: DType?
    /// Block types and `.auto`: quantize the blocks' adaLN modulation linears too, as ComfyUI-GGUF's
    /// converter does (kept in high precision by default).
    public var quantizeModulations = false
    /// The family's block policy as these options apply it.
    public func blockPolicy(_ configuration: ModelConfiguration) -> BlockPolicy {
        quantizeModulations ? configuration.blockPolicy.quantizingModulations() : configuration.blockPolicy
    }
    /// The fidelity budget of `dtype` `.auto`.
    public var auto: AutoPrecisionOptions?
    /// `.auto` only, set by AutoPrecision: each quantized tensor's block type, and the manifest record.
    var autoChoices: [String: DType]?
    var autoRecord: JSONValue = .null

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
    /// `--dtype auto`: the smallest choice meeting `--min-sqnr` is larger than `--max-size`.
    case autoTooLarge(bytes: Int, max: Int, minSQNR: Double)
    /// `--dtype auto`: confirmation still missed after every round of tightening.
    case autoUnconfirmed(minSQNR: Double, rounds: Int)
    /// `--dtype auto` without a budget.
    case autoNeedsBudget

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
        case let .autoTooLarge(bytes, max, sqnr):
            return "no choice of block types reaching an output SQNR of \(NumberFormat.fixed(sqnr, 1)) dB fits in \(max) bytes: the smallest takes \(bytes) bytes; lower --min-sqnr or raise --max-size"
        case let .autoUnconfirmed(sqnr, rounds):
            return "the output SQNR stayed under \(NumberFormat.fixed(sqnr, 1)) dB after \(rounds) rounds of tightening; lower --min-sqnr"
        case .autoNeedsBudget:
            return "--dtype auto needs --min-sqnr DB"
        case let .keepMatchesNothing(patterns, model, example):
            let list = patterns.map { "'\($0)'" }.joined(separator: ", ")
            return "--keep \(list) match\(patterns.count == 1 ? "es" : "") no tensor of \(model) (canonical names look like '\(example)'; `ditkit inspect` on a converted bundle lists them)"
        }
    }
}

extension ConvertError: ClassifiedError {
    public var kind: ErrorKind {
        switch self {
        case .keepMatchesNothing, .duplicateOutput, .autoNeedsBudget: return .usage
        case .autoTooLarge, .autoUnconfirmed: return .mismatch
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
            ("source", .object([("file", .string(sourcePath)), ("naming", .string(sourceNaming)), ("subtree", .string(subtree)),
                                ("sha256_remembered", .bool(sourceHashRemembered))])),
            ("tensors", .int(tensors)),
            ("stored_types", .object(storedTypes.map { ($0.0.name, .int($0.1)) })),
            ("parameters", .int(parameters)),
            ("bytes_in", .int(bytesIn)),
            ("bytes_out", .int(bytesOut)),
            ("seconds", .double(seconds)),
            ("lossy", .array(lossy.map { .object([("name", .string($0.name)), ("error", $0.error.json)]) })),
            ("nonfinite", .array(nonFinite.map { .object([("name", .string($0.name)), ("count", .int($0.count))]) })),
            ("kept", .array(kept.map { .object([("name", .string($0.name)), ("dtype", .string($0.dtype.name)), ("reason", .string($0.reason))]) })),
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
    /// Block storage types: the tensors not stored in the requested type, and why.
    public var kept: [StorageDecision] = []
    /// Whether every source file's SHA-256 was remembered (`ConversionOptions.digests`), not hashed now.
    public var sourceHashRemembered = false
}

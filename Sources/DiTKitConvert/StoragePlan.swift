// The stored dtype of every canonical tensor of a conversion, and why: the requested storage type,
// `--keep`, the family's int8 or block-type policy, and for the block types the rows that do not
// divide into blocks. Kept apart from the streaming pipeline (Converter.swift), which only reads
// the result.
import DiTKitCore
import DiTKitFormats
import DiTKitModels

/// A tensor stored in a type other than the one requested, and why (manifest `dtype_policy`).
public struct StorageDecision: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var reason: String
}

/// The stored dtype of every tensor of a plan.
public struct StoragePlan: Sendable {
    /// Stored dtypes, parallel to the plan's tensors.
    public var dtypes: [DType]
    /// Block storage types only: every tensor not stored in the requested block type, and why.
    public var decisions: [StorageDecision]

    /// The block type a K-quant falls back to when a row is a multiple of 32 but not of 256
    /// (llama.cpp's `llama_tensor_get_type` fallbacks: each at least as precise as the K-quant).
    public static func fallback(for type: DType) -> DType? {
        switch type {
        case .q2_K, .q3_K: return .q4_0
        case .q4_K: return .q5_0
        case .q5_K: return .q5_1
        case .q6_K: return .q8_0
        default: return nil
        }
    }

    /// Chooses the stored dtype of every tensor of `plan` for `dtype` and `options.keep`.
    static func make(plan: ModelPlan, container: any TensorContainer, index: [String: Int], dtype: StorageType, options: ConversionOptions) -> StoragePlan {
        let config = plan.configuration
        let policy = dtype.blockType != nil ? options.blockPolicy(config) : nil
        var dtypes: [DType] = []
        var decisions: [StorageDecision] = []
        for t in plan.tensors {
            let sources = t.recipe.sources.compactMap { index[$0] }.map { container.tensors[$0] }
            let kept = keptType(sources: sources, shape: t.shape, dtype: dtype, options: options)
            let keepPattern = options.keep.first { globMatch($0, t.name) }
            switch dtype {
            case .f32, .f16, .bf16:
                dtypes.append(keepPattern != nil ? .f32 : dtype.floatDType ?? .f32)
            case .int8:
                dtypes.append(keepPattern == nil && config.quantizesByDefault(t.name, shape: t.shape) ? .i8 : .f32)
            case .source:
                dtypes.append(kept)
            case .auto:
                dtypes.append(options.autoChoices?[t.name] ?? kept)
            default:
                guard let type = dtype.blockType, let policy else { dtypes.append(kept); continue }
                func keep(_ reason: String) {
                    dtypes.append(kept)
                    decisions.append(StorageDecision(name: t.name, dtype: kept, reason: reason))
                }
                if let why = policy.keepReason(t.name, shape: t.shape) { keep(why); continue }
                if let p = keepPattern { keep("--keep '\(p)'"); continue }
                if kept == type {
                    // Already in the requested type (a GGUF source): the blocks are copied verbatim.
                    dtypes.append(type)
                    continue
                }
                let row = t.shape.last ?? 0
                if row % (type.block?.elements ?? 1) == 0 {
                    dtypes.append(type)
                } else if let f = fallback(for: type), let b = f.block, row % b.elements == 0 {
                    dtypes.append(f)
                    decisions.append(StorageDecision(name: t.name, dtype: f, reason: "rows of \(row) values are not a multiple of \(type.block?.elements ?? 0)"))
                } else {
                    keep("rows of \(row) values are not a multiple of \(type.block?.elements ?? 0)" + (fallback(for: type) != nil ? " or 32" : ""))
                }
            }
        }
        return StoragePlan(dtypes: dtypes, decisions: decisions)
    }

    /// The type a tensor kept out of the block types gets: its lossless source type, or
    /// `options.keepDType` for float tensors of block and `.auto` conversions.
    static func keptType(sources: [TensorEntry], shape: [Int], dtype: StorageType, options: ConversionOptions) -> DType {
        let lossless = LosslessKeep.dtype(sources: sources, shape: shape)
        guard let k = options.keepDType, dtype.blockType != nil || dtype == .auto, lossless.block == nil else { return lossless }
        return k
    }

    /// The manifest's `dtype_policy.blocks` object of a block storage type.
    static func json(_ type: DType, policy: BlockPolicy, decisions: [StorageDecision], keepDType: DType?) -> JSONValue {
        var m: [(String, JSONValue)] = [
            ("type", .string(type.name)),
            ("quantizer", .string("ggml quantize_row_\(type.name.lowercased().replacingOccurrences(of: "_k", with: "_K"))_ref (no importance matrix)")),
        ]
        if case .object(let p) = policy.json { m += p }
        m.append(("kept_dtype", .string(keepDType.map { "\($0.name) (--keep-dtype); block types as stored" }
            ?? "the source's own type, losslessly: F32, F16, BF16 and block types as stored, float8 as F16, F64 as F32")))
        if let f = fallback(for: type) {
            m.append(("rows", .string("rows that are not a multiple of \(type.block?.elements ?? 0) values are stored as \(f.name) when they are a multiple of 32, else kept")))
        } else {
            m.append(("rows", .string("rows that are not a multiple of \(type.block?.elements ?? 0) values are kept")))
        }
        m.append(("tensors", .array(decisions.map {
            .object([("name", .string($0.name)), ("dtype", .string($0.dtype.name)), ("reason", .string($0.reason))])
        })))
        return .object(m)
    }
}

// `ditkit export --to gguf`: GGUF v3 with the configuration as namespaced metadata and provenance.
import DiTKitCore
import DiTKitFormats
import DiTKitModels

/// Tensor types for a GGUF export.
public enum GGUFTarget: String, Sendable, CaseIterable {
    /// Stored dtypes as they are (F32, F16, BF16, block types); I8 tensors become Q8_0.
    case auto
    case f32, f16, bf16
    /// Q8_0 for 2-D weights whose rows are a multiple of 32 (the linear layers); others stay as stored.
    /// Tensors already in a block type are written verbatim by every target.
    case q8_0 = "q8_0"
}

public enum GGUFExport {
    static func metadata(_ b: NativeBundle, _ c: ModelConfiguration, quantized: Bool, naming: String) -> [(String, GGUFValue)] {
        let arch = c.family.ggufArchitecture
        var m: [(String, GGUFValue)] = [
            ("general.architecture", .string(arch)),
            ("general.name", .string(b.manifest.variant)),
            ("general.alignment", .u32(UInt32(GGUFWriter.alignment))),
        ]
        if quantized { m.append(("general.quantization_version", .u32(2))) }
        if case .object(let fields) = b.manifest.config {
            for (k, v) in fields {
                switch v {
                case .int(let i): m.append(("\(arch).\(k)", i >= 0 && i <= Int(UInt32.max) ? .u32(UInt32(i)) : .u64(UInt64(bitPattern: Int64(i)))))
                case .double(let d): m.append(("\(arch).\(k)", .f32(Float(d))))
                case .bool(let x): m.append(("\(arch).\(k)", .bool(x)))
                case .string(let s): m.append(("\(arch).\(k)", .string(s)))
                case .array(let a): m.append(("\(arch).\(k)", .array(a.compactMap { $0.intValue.map { .u32(UInt32(clamping: $0)) } })))
                default: break
                }
            }
        }
        m.append(("ditkit.variant", .string(b.manifest.variant)))
        // The naming scheme of the tensor names (`flux-original`, `sd3-original`, or the bundle's).
        m.append(("ditkit.naming", .string(naming == "canonical" ? b.manifest.naming : "\(b.manifest.family)-\(naming)")))
        m.append(("ditkit.converter", .string("\(b.manifest.converterName) \(b.manifest.converterVersion)")))
        m.append(("ditkit.dtype", .string(b.manifest.dtypePolicy["dtype"]?.stringValue ?? "")))
        if let s = b.manifest.provenance["source"] {
            for k in ["file", "sha256", "container", "naming", "subtree"] {
                if let v = s[k]?.stringValue { m.append(("ditkit.source.\(k)", .string(v))) }
            }
        }
        if let z = b.manifest.provenance["zoo"]?["id"]?.stringValue { m.append(("ditkit.zoo.id", .string(z))) }
        return m
    }

    /// The tensor type `target` gives a tensor stored as `stored` (I8: dequantized int8 values;
    /// block types are written verbatim, whatever the target), `q8able` when its rows divide into
    /// Q8_0 blocks (2-D, rows a multiple of 32).
    static func type(for stored: DType, target: GGUFTarget, q8able: Bool) -> DType {
        if stored.block != nil { return stored }
        switch target {
        case .auto:
            switch stored {
            case .f16, .bf16: return stored
            case .i8: return q8able ? .q8_0 : .f32
            default: return .f32
            }
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        case .q8_0: return q8able ? .q8_0 : (stored == .f16 || stored == .bf16 ? stored : .f32)
        }
    }

    /// Writes the bundle as GGUF in ComfyUI-GGUF's conventions: `general.architecture` (the family's),
    /// its tensor names (`ModelFamily.ggufNaming`: the original layout for FLUX, SD3 and PixArt, the
    /// canonical names when the bundle cannot be written in it), ggml's dimension order, block types
    /// verbatim. A tensor holding NaN or infinities is never quantized: it stays in its stored float
    /// type (Q8_0's scales and integers cannot hold them). Throws on names over 64 bytes and write errors.
    public static func export(_ bundle: NativeBundle, to output: String, type target: GGUFTarget = .auto, force: Bool = false) throws -> ExportSummary {
        let c = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
        var notes: [String] = []
        var scheme = c.family.ggufNaming(c)
        if let s = scheme, let why = s.refusal {
            notes.append("tensor names are DiTKit's canonical ones: the \(s.name) layout cannot be written (\(why))")
            scheme = nil
        }
        notes += scheme?.notes ?? []
        let items = try ExportTensors.tensors(bundle, scheme: scheme, int8: .float32, blocks: .verbatim)
        var tensors: [GGUFTensor] = []
        var quantized = false
        let nonFiniteNotes = NoteBox()
        for item in items {
            if let n = item.note { notes.append(n) }
            let q8able = item.shape.count == 2 && (item.shape.last ?? 0) % 32 == 0
            let wanted = type(for: item.stored == .i8 ? .i8 : item.dtype, target: target, q8able: q8able)
            // Quantizing into Q8_0 needs finite values; known only once the bytes are read.
            let fallback: DType = item.dtype == .f16 || item.dtype == .bf16 ? item.dtype : .f32
            let mayFallBack = wanted == .q8_0 && item.dtype.block == nil
            var type = wanted
            if mayFallBack {
                let bytes = try item.bytes()
                let bad = withExtendedLifetime(bytes) { bytes.buffer.baseAddress.map { NonFinite.count($0, dtype: item.dtype, count: item.shape.reduce(1, *)) } ?? 0 }
                if bad > 0 {
                    type = fallback
                    nonFiniteNotes.add("'\(item.name)' holds \(bad) NaN or infinite values, which Q8_0 cannot store: written as \(fallback.name)")
                }
            }
            if type.block != nil { quantized = true }
            let dtype = item.dtype, name = item.name, shape = item.shape, produce = item.bytes, finalType = type
            tensors.append(GGUFTensor(name: name, shape: shape, type: finalType, bytes: {
                // Same type as produced: the bytes as they are (block types verbatim).
                let b = try produce()
                if finalType == dtype { return b }
                let n = shape.reduce(1, *)
                let floats = OwnedBuffer(uninitializedCount: n * 4)
                let fp = floats.pointer.assumingMemoryBound(to: Float.self)
                try withExtendedLifetime(b) {
                    guard let base = b.buffer.baseAddress else { return }
                    guard dtype.isDequantizable else { throw CheckpointError.inconsistent("cannot write '\(name)' (\(dtype.name)) as \(finalType.name)") }
                    ElementConversion.toFloat32(base, dtype: dtype, count: n, into: fp)
                }
                if finalType == .f32 { return floats.bytes }
                let out = OwnedBuffer(uninitializedCount: try finalType.byteCount(shape: shape))
                var stats = NarrowingStats.zero
                switch finalType {
                case .f16: Narrow.f16(fp, out.pointer.assumingMemoryBound(to: UInt16.self), count: n, stats: &stats)
                case .bf16: Narrow.bf16(fp, out.pointer.assumingMemoryBound(to: UInt16.self), count: n, stats: &stats)
                case .q8_0:
                    // Values were counted finite when the type was chosen; checked again before ggml's quantizer sees them.
                    guard BlockQuantizer.countNonFinite(fp, count: n) == 0 else { throw CheckpointError.inconsistent("'\(name)' holds NaN or infinite values") }
                    BlockQuantizer.quantize(.q8_0, fp, count: n, into: out.pointer)
                default: throw CheckpointError.inconsistent("cannot write '\(name)' as \(finalType.name)")
                }
                return out.bytes
            }))
        }
        notes += nonFiniteNotes.notes
        try AtomicOutput.produce(output, kind: .ggufExport, force: force) { temporary in
            let file = try OutputFile(path: temporary)
            try GGUFWriter.write(metadata: metadata(bundle, c, quantized: quantized, naming: scheme?.name ?? "canonical"), tensors: tensors, to: file)
            try file.close()
        }
        let bytes = FileSystem.fileSize(output) ?? 0
        if let note = int8Note(stored: items.map(\.stored), written: tensors.map(\.type),
                               bundleBytes: bundle.manifest.weightsBytes, fileBytes: bytes, target: target) {
            notes.append(note)
        }
        return ExportSummary(path: output, format: "gguf", tensors: tensors.count, bytes: bytes, notes: notes)
    }

    /// What became of a bundle's I8 tensors, said once: GGUF has no per-row int8 type, so each is
    /// re-quantized to Q8_0 (2-D, rows a multiple of 32) or dequantized; nil without I8 tensors.
    static func int8Note(stored: [DType], written: [DType], bundleBytes: Int, fileBytes: Int, target: GGUFTarget) -> String? {
        var became: [DType: Int] = [:]
        for (s, w) in zip(stored, written) where s == .i8 { became[w, default: 0] += 1 }
        let total = became.values.reduce(0, +)
        guard total > 0 else { return nil }
        let parts = became.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key.name < $1.key.name) }.map { type, n in
            "\(n) \(type == .q8_0 ? "re-quantized to Q8_0 (blocks of 32)" : "dequantized to \(type.name)")"
        }
        var note = "the bundle's \(total) I8 tensor\(total == 1 ? "" : "s") (GGUF has no per-row int8 type): " + parts.joined(separator: ", ")
        let dequantized = became.filter { $0.key != .q8_0 }.values.reduce(0, +)
        if dequantized > 0 && target == .auto {
            note += "; Q8_0 takes only 2-D tensors with rows of a multiple of 32 values (convolution kernels are 4-D)"
        }
        note += "; \(NumberFormat.bytes(bundleBytes)) of bundle weights became a \(NumberFormat.bytes(fileBytes)) file"
        if became[.f32] != nil && target == .auto { note += " (--gguf-type f16 writes the dequantized ones as F16)" }
        return note
    }
}

/// Notes gathered while choosing tensor types.
private final class NoteBox {
    var notes: [String] = []
    func add(_ n: String) { notes.append(n) }
}

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
    static func metadata(_ b: NativeBundle, _ c: ModelConfiguration, quantized: Bool) -> [(String, GGUFValue)] {
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
        m.append(("ditkit.naming", .string(b.manifest.naming)))
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

    /// Writes the bundle as GGUF. Throws on names over 64 bytes and write errors.
    public static func export(_ bundle: NativeBundle, to output: String, type target: GGUFTarget = .auto, force: Bool = false) throws -> ExportSummary {
        let c = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
        var tensors: [GGUFTensor] = []
        var quantized = false
        for t in bundle.manifest.tensors {
            guard let view = bundle.view(t.name) else { continue }
            let n = view.elementCount
            let rowLength = view.shape.last ?? 1
            let q8able = view.shape.count == 2 && rowLength % 32 == 0
            let stored = view.dtype
            let type: DType
            if stored.block != nil {
                // Block types are ggml's own: written verbatim, whatever the target.
                type = stored
            } else {
                switch target {
                case .auto:
                    switch stored {
                    case .f16: type = .f16
                    case .bf16: type = .bf16
                    case .i8: type = q8able ? .q8_0 : .f32
                    default: type = .f32
                    }
                case .f32: type = .f32
                case .f16: type = .f16
                case .bf16: type = .bf16
                case .q8_0: type = q8able ? .q8_0 : (stored == .f16 ? .f16 : (stored == .bf16 ? .bf16 : .f32))
                }
            }
            if type.block != nil { quantized = true }
            tensors.append(GGUFTensor(name: t.name, shape: view.shape, type: type, bytes: {
                // Same type as stored: the bytes as they are.
                if type == stored { return view.bytes }
                let floats = OwnedBuffer(uninitializedCount: n * 4)
                let fp = floats.pointer.assumingMemoryBound(to: Float.self)
                view.dequantize(into: fp)
                if type == .f32 { return floats.bytes }
                let out = OwnedBuffer(uninitializedCount: try type.byteCount(shape: view.shape))
                var stats = NarrowingStats.zero
                switch type {
                case .f16: Narrow.f16(fp, out.pointer.assumingMemoryBound(to: UInt16.self), count: n, stats: &stats)
                case .bf16: Narrow.bf16(fp, out.pointer.assumingMemoryBound(to: UInt16.self), count: n, stats: &stats)
                case .q8_0: BlockQuantizer.quantize(.q8_0, fp, count: n, into: out.pointer)
                default: throw CheckpointError.inconsistent("cannot write '\(t.name)' as \(type.name)")
                }
                return out.bytes
            }))
        }
        try AtomicOutput.produce(output, kind: .ggufExport, force: force) { temporary in
            let file = try OutputFile(path: temporary)
            try GGUFWriter.write(metadata: metadata(bundle, c, quantized: quantized), tensors: tensors, to: file)
            try file.close()
        }
        let bytes = FileSystem.fileSize(output) ?? 0
        return ExportSummary(path: output, format: "gguf", tensors: tensors.count, bytes: bytes,
                             notes: int8Note(stored: bundle.manifest.tensors.map(\.stored.dtype), written: tensors.map(\.type),
                                             bundleBytes: bundle.manifest.weightsBytes, fileBytes: bytes, target: target).map { [$0] } ?? [])
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

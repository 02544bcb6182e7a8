// `ditkit export --to safetensors`: a bundle's tensors as a safetensors file, with provenance.
import DiTKitCore
import DiTKitFormats
import DiTKitModels

/// What an export wrote.
public struct ExportSummary: Sendable {
    public var path: String
    public var format: String
    public var tensors: Int
    public var bytes: Int
}

public enum ExportError: Error, CustomStringConvertible, Sendable {
    case unknownNaming(String, family: String, known: [String])
    case noDiffusersClass(String)
    public var description: String {
        switch self {
        case let .unknownNaming(n, f, known):
            return "naming '\(n)' does not apply to a \(f) bundle; it has \(known.joined(separator: ", "))"
        case let .noDiffusersClass(f):
            return "diffusers has no class for \(f); export to safetensors instead"
        }
    }
}

public enum SafetensorsExport {
    /// Writes the bundle's tensors to `output`. With `dequantize`, I8 tensors become F32 values;
    /// otherwise they are written as I8 with a float32 `<name>.scale` tensor beside them.
    public static func export(_ bundle: NativeBundle, to output: String, naming: String = "canonical",
                              dequantize: Bool = false, force: Bool = false) throws -> ExportSummary {
        let items = try ExportTensors.items(bundle, naming: naming, dequantize: dequantize)
        try AtomicOutput.produce(output, force: force) { temporary in
            let file = try OutputFile(path: temporary)
            try SafetensorsWriter.write(items, metadata: metadata(bundle, naming: naming, dequantize: dequantize), to: file)
            try file.close()
        }
        return ExportSummary(path: output, format: "safetensors", tensors: items.count, bytes: FileSystem.fileSize(output) ?? 0)
    }

    /// Provenance carried into `__metadata__` (strings only).
    static func metadata(_ b: NativeBundle, naming: String, dequantize: Bool) -> [(String, String)] {
        let m = b.manifest
        var out: [(String, String)] = [
            ("format", "pt"),
            ("ditkit.format_version", String(BundleManifest.formatVersion)),
            ("ditkit.converter", "\(m.converterName) \(m.converterVersion)"),
            ("ditkit.family", m.family), ("ditkit.variant", m.variant),
            ("ditkit.naming", naming == "canonical" ? m.naming : naming),
            ("ditkit.config", JSONWriter.string(m.config, pretty: false)),
            ("ditkit.dtype", m.dtypePolicy["dtype"]?.stringValue ?? ""),
            ("ditkit.dequantized", dequantize ? "true" : "false"),
        ]
        if let s = m.provenance["source"] {
            for k in ["file", "sha256", "container", "naming", "subtree"] {
                if let v = s[k]?.stringValue { out.append(("ditkit.source.\(k)", v)) }
            }
        }
        return out
    }
}

/// The tensors of a bundle under an export naming.
public enum ExportTensors {
    /// The namings a bundle can be exported with: `canonical` and its family's.
    public static func namings(_ c: ModelConfiguration) -> [String] { ["canonical"] + c.family.exportNamings(c).map(\.name) }

    public static func items(_ bundle: NativeBundle, naming: String, dequantize: Bool) throws -> [SafetensorsItem] {
        let c = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
        var scheme: ExportNaming?
        if naming != "canonical" {
            guard let s = c.family.exportNamings(c).first(where: { $0.name == naming }) else {
                throw ExportError.unknownNaming(naming, family: c.family.title, known: namings(c))
            }
            scheme = s
        }
        var items: [SafetensorsItem] = []
        for t in bundle.manifest.tensors {
            guard let view = bundle.view(t.name) else { continue }
            let asFloat = dequantize && view.dtype == .i8
            let dtype: DType = asFloat ? .f32 : view.dtype
            let full: @Sendable () throws -> RawBytes = asFloat ? { floatBytes(view) } : { view.bytes }
            let targets = scheme?.map(t.name, view.shape) ?? [ExportedTensor(t.name)]
            let rows = view.shape.first ?? 1
            let rowBytes = view.shape.dropFirst().reduce(1, *) * dtype.itemSize
            for target in targets {
                var shape = view.shape
                if !shape.isEmpty { shape[0] = target.part.rows(of: rows) }
                items.append(SafetensorsItem(name: target.name, dtype: dtype, shape: target.shape ?? shape,
                                             bytes: { try part(target.part, of: try full(), rowBytes: rowBytes, rows: rows) }))
            }
            if view.dtype == .i8 && !asFloat, let s = view.scale {
                for target in targets {
                    items.append(SafetensorsItem(name: target.name + ".scale", dtype: .f32, shape: [target.part.rows(of: rows)],
                                                 bytes: { try part(target.part, of: s, rowBytes: 4, rows: rows) }))
                }
            }
        }
        return items
    }

    /// The bytes of `part` of a tensor with `rows` rows of `rowBytes` bytes.
    static func part(_ part: TensorPart, of b: RawBytes, rowBytes: Int, rows: Int) throws -> RawBytes {
        func slice(_ start: Int, _ count: Int) -> RawBytes {
            RawBytes(owner: b.owner, buffer: UnsafeRawBufferPointer(rebasing: b.buffer[(start * rowBytes)..<((start + count) * rowBytes)]))
        }
        switch part {
        case .whole: return b
        case let .rows(p, of): return slice(p * rows / of, rows / of)
        case let .rowRange(start, count): return slice(start, count)
        case .swappedHalves:
            let half = rows / 2 * rowBytes
            let out = OwnedBuffer(uninitializedCount: b.count)
            guard let src = b.buffer.baseAddress else { return b }
            out.pointer.copyMemory(from: src + half, byteCount: b.count - half)
            (out.pointer + (b.count - half)).copyMemory(from: src, byteCount: half)
            return out.bytes
        }
    }

    static func floatBytes(_ view: TensorView) -> RawBytes {
        let out = OwnedBuffer(uninitializedCount: view.elementCount * 4)
        view.dequantize(into: out.pointer.assumingMemoryBound(to: Float.self))
        return out.bytes
    }
}

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

/// Naming of exported tensors.
public enum ExportNaming: String, Sendable, CaseIterable {
    /// The bundle's canonical names (official for DiT, diffusers for the VAE).
    case canonical
    /// facebookresearch/DiT names (DiT only).
    case official
    /// diffusers names (DiT: `DiTTransformer2DModel`; VAE: current `AutoencoderKL`).
    case diffusers
    /// Original LDM/CompVis names (VAE only).
    case ldm
}

public enum ExportError: Error, CustomStringConvertible, Sendable {
    case namingNotApplicable(String, family: String)
    public var description: String {
        switch self {
        case let .namingNotApplicable(n, f): return "naming '\(n)' does not apply to a \(f) bundle"
        }
    }
}

public enum SafetensorsExport {
    /// Writes the bundle's tensors to `output`. With `dequantize`, I8 tensors become F32 values;
    /// otherwise they are written as I8 with a float32 `<name>.scale` tensor beside them.
    public static func export(_ bundle: NativeBundle, to output: String, naming: ExportNaming = .canonical,
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
    static func metadata(_ b: NativeBundle, naming: ExportNaming, dequantize: Bool) -> [(String, String)] {
        let m = b.manifest
        var out: [(String, String)] = [
            ("format", "pt"),
            ("ditkit.format_version", String(BundleManifest.formatVersion)),
            ("ditkit.converter", "\(m.converterName) \(m.converterVersion)"),
            ("ditkit.family", m.family), ("ditkit.variant", m.variant),
            ("ditkit.naming", naming == .canonical ? m.naming : naming.rawValue),
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
    public static func items(_ bundle: NativeBundle, naming: ExportNaming, dequantize: Bool) throws -> [SafetensorsItem] {
        let family = bundle.manifest.family
        switch (naming, family) {
        case (.ldm, "dit"), (.official, "vae"): throw ExportError.namingNotApplicable(naming.rawValue, family: family)
        default: break
        }
        let depth = bundle.manifest.config["depth"]?.intValue ?? 0
        let levels = bundle.manifest.config["block_out_channels"]?.arrayValue?.count ?? 0
        var items: [SafetensorsItem] = []
        for t in bundle.manifest.tensors {
            guard let view = bundle.view(t.name) else { continue }
            let asFloat = dequantize && view.dtype == .i8
            let dtype: DType = asFloat ? .f32 : view.dtype
            let full: @Sendable () throws -> RawBytes = asFloat ? { floatBytes(view) } : { view.bytes }
            var targets: [(String, DiffusersPart)] = [(t.name, .whole)]
            var shape = view.shape
            switch (naming, family) {
            case (.diffusers, "dit"):
                targets = DiTNaming.toDiffusers(t.name, depth: depth)
            case (.ldm, "vae"):
                let mapped = VAENaming.toLDM.remap(t.name, levels: levels).name
                targets = [(mapped, .whole)]
                // LDM stores attention projections as 1x1 convolutions.
                if mapped.contains(".attn_1."), mapped.hasSuffix(".weight"), shape.count == 2 { shape += [1, 1] }
            default: break
            }
            for (name, part) in targets {
                switch part {
                case .whole:
                    items.append(SafetensorsItem(name: name, dtype: dtype, shape: shape, bytes: full))
                case let .rows(p, of):
                    let rows = view.shape[0] / of
                    var partShape = view.shape
                    partShape[0] = rows
                    let rowBytes = view.shape.dropFirst().reduce(1, *) * dtype.itemSize
                    items.append(SafetensorsItem(name: name, dtype: dtype, shape: partShape, bytes: {
                        let b = try full()
                        let start = p * rows * rowBytes
                        return RawBytes(owner: b.owner, buffer: UnsafeRawBufferPointer(rebasing: b.buffer[start..<(start + rows * rowBytes)]))
                    }))
                }
            }
            if view.dtype == .i8 && !asFloat, let s = view.scale {
                for (name, part) in targets {
                    if case let .rows(p, of) = part {
                        let rows = view.shape[0] / of
                        items.append(SafetensorsItem(name: name + ".scale", dtype: .f32, shape: [rows], bytes: {
                            RawBytes(owner: s.owner, buffer: UnsafeRawBufferPointer(rebasing: s.buffer[(p * rows * 4)..<((p + 1) * rows * 4)]))
                        }))
                    } else {
                        items.append(SafetensorsItem(name: name + ".scale", dtype: .f32, shape: [view.shape[0]], bytes: { s }))
                    }
                }
            }
        }
        return items
    }

    static func floatBytes(_ view: TensorView) -> RawBytes {
        let out = OwnedBuffer(uninitializedCount: view.elementCount * 4)
        view.dequantize(into: out.pointer.assumingMemoryBound(to: Float.self))
        return out.bytes
    }
}

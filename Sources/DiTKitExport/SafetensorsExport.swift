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
    /// What the user should know about the result (tensors the layout has no slot for, …).
    public var notes: [String] = []

    /// `ditkit export --json`.
    public var json: JSONValue {
        .object([("path", .string(path)), ("format", .string(format)), ("tensors", .int(tensors)), ("bytes", .int(bytes)),
                 ("notes", .array(notes.map { .string($0) }))])
    }
}

public enum ExportError: Error, CustomStringConvertible, Sendable, ClassifiedError {
    case unknownNaming(String, family: String, known: [String])
    case noDiffusersClass(String)
    case refused(String, String)
    /// A tensor is stored in a ggml block type, which safetensors has no dtype for.
    case blockTypeNeedsDequantize(tensor: String, dtype: DType)
    public var description: String {
        switch self {
        case let .unknownNaming(n, f, known):
            return "naming '\(n)' does not apply to a \(f) bundle; it has \(known.joined(separator: ", "))"
        case let .refused(n, why):
            return "cannot write the \(n) layout: \(why)"
        case let .noDiffusersClass(f):
            return "diffusers has no class for \(f); export to safetensors instead"
        case let .blockTypeNeedsDequantize(t, d):
            return "tensor '\(t)' is stored as \(d.name), which safetensors has no dtype for; export with --dequantize (float32 values)"
        }
    }

    /// A naming, target or missing --dequantize that does not fit the bundle is a usage error.
    public var kind: ErrorKind {
        switch self {
        case .unknownNaming, .noDiffusersClass, .blockTypeNeedsDequantize: return .usage
        case .refused: return .refusedInput
        }
    }
}

public enum SafetensorsExport {
    /// Writes the bundle's tensors to `output`. With `dequantize`, I8 tensors and ggml block types
    /// become F32 values; otherwise I8 tensors are written as I8 with a float32 `<name>.scale` tensor
    /// beside them, and a bundle with block types is refused (`ExportError.blockTypeNeedsDequantize`).
    public static func export(_ bundle: NativeBundle, to output: String, naming: String = "canonical",
                              dequantize: Bool = false, force: Bool = false) throws -> ExportSummary {
        let items = try ExportTensors.items(bundle, naming: naming, dequantize: dequantize)
        try AtomicOutput.produce(output, kind: .safetensorsExport, force: force) { temporary in
            let file = try OutputFile(path: temporary)
            try SafetensorsWriter.write(items, metadata: metadata(bundle, naming: naming, dequantize: dequantize), to: file)
            try file.close()
        }
        let c = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
        return ExportSummary(path: output, format: "safetensors", tensors: items.count, bytes: FileSystem.fileSize(output) ?? 0,
                             notes: try ExportTensors.scheme(c, naming)?.notes ?? [])
    }

    /// Provenance carried into `__metadata__` (strings only).
    static func metadata(_ b: NativeBundle, naming: String, dequantize: Bool) -> [(String, String)] {
        let m = b.manifest
        var out: [(String, String)] = [
            ("format", "pt"),
            ("ditkit.format_version", String(m.formatVersion)),
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

    /// The naming scheme `naming` of the bundle's family (nil for `canonical`). Throws when the
    /// family has no such naming or the bundle cannot be written in it.
    public static func scheme(_ c: ModelConfiguration, _ naming: String) throws -> ExportNaming? {
        guard naming != "canonical" else { return nil }
        guard let s = c.family.exportNamings(c).first(where: { $0.name == naming }) else {
            throw ExportError.unknownNaming(naming, family: c.family.title, known: namings(c))
        }
        if let why = s.refusal { throw ExportError.refused(naming, why) }
        return s
    }

    public static func items(_ bundle: NativeBundle, naming: String, dequantize: Bool) throws -> [SafetensorsItem] {
        let c = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
        let scheme = try scheme(c, naming)
        var items: [SafetensorsItem] = []
        for extra in scheme?.extras ?? [] {
            items.append(SafetensorsItem(name: extra.name, dtype: .f32, shape: extra.shape, bytes: {
                let v = try extra.values()
                return RawBytes(copying: v.withUnsafeBytes { Array($0) })
            }))
        }
        // Canonical tensors stacked into one exported tensor, gathered by exported name.
        var stacks: [String: [(slot: Int, shape: [Int], bytes: @Sendable () throws -> RawBytes)]] = [:]
        var stackSlots: [String: Int] = [:]
        var stackAt: [String: Int] = [:]
        for t in bundle.manifest.tensors {
            guard let view = bundle.view(t.name) else { continue }
            if view.dtype.block != nil && !dequantize { throw ExportError.blockTypeNeedsDequantize(tensor: t.name, dtype: view.dtype) }
            let asFloat = dequantize && (view.dtype == .i8 || view.dtype.block != nil)
            let dtype: DType = asFloat ? .f32 : view.dtype
            let full: @Sendable () throws -> RawBytes = asFloat ? { floatBytes(view) } : { view.bytes }
            let targets = scheme?.map(t.name, view.shape) ?? [ExportedTensor(t.name)]
            let rows = view.shape.first ?? 1
            let rowBytes = view.shape.dropFirst().reduce(1, *) * dtype.itemSize
            var outputs: [(ExportedTensor, String, DType, [Int], @Sendable () throws -> RawBytes)] = []
            for target in targets {
                var shape = view.shape
                if !shape.isEmpty { shape[0] = target.part.rows(of: rows) }
                outputs.append((target, target.name, dtype, target.shape ?? shape, { try part(target.part, of: try full(), rowBytes: rowBytes, rows: rows) }))
                if view.dtype == .i8 && !asFloat, let s = view.scale {
                    outputs.append((target, target.name + ".scale", .f32, [target.part.rows(of: rows)], { try part(target.part, of: s, rowBytes: 4, rows: rows) }))
                }
            }
            for (target, name, dt, shape, bytes) in outputs {
                guard let slot = target.slot else {
                    items.append(SafetensorsItem(name: name, dtype: dt, shape: shape, bytes: bytes))
                    continue
                }
                if stacks[name] == nil {
                    // The stacked tensor takes the place of its first member.
                    stackAt[name] = items.count
                    items.append(SafetensorsItem(name: name, dtype: dt, shape: shape, bytes: { RawBytes(copying: []) }))
                }
                stacks[name, default: []].append((slot, shape, bytes))
                stackSlots[name] = target.slots
            }
        }
        for (name, members) in stacks {
            guard let at = stackAt[name], members.count == stackSlots[name],
                  Set(members.map(\.slot)) == Set(0..<members.count),
                  members.allSatisfy({ $0.shape.dropFirst() == members[0].shape.dropFirst() }) else {
                throw ExportError.refused("stacked tensor", "'\(name)' is missing some of its \(stackSlots[name] ?? 0) parts or they do not stack")
            }
            let sorted = members.sorted { $0.slot < $1.slot }
            let shape = [sorted.reduce(0) { $0 + $1.shape[0] }] + sorted[0].shape.dropFirst()
            let dt = items[at].dtype
            items[at] = SafetensorsItem(name: name, dtype: dt, shape: shape, bytes: {
                let parts = try sorted.map { try $0.bytes() }
                let out = OwnedBuffer(uninitializedCount: parts.reduce(0) { $0 + $1.count })
                var o = 0
                for p in parts {
                    if let b = p.buffer.baseAddress { (out.pointer + o).copyMemory(from: b, byteCount: p.count) }
                    o += p.count
                }
                return out.bytes
            })
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

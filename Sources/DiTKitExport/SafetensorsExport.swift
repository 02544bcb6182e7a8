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
        return try tensors(bundle, scheme: try scheme(c, naming), int8: dequantize ? .float32 : .withScales,
                           blocks: dequantize ? .float32 : .refuse).map { SafetensorsItem(name: $0.name, dtype: $0.dtype, shape: $0.shape, bytes: $0.bytes) }
    }

    /// How an export writes I8 tensors.
    public enum Int8Handling: Sendable { case withScales, float32 }
    /// How an export writes tensors stored in a ggml block type.
    public enum BlockHandling: Sendable { case refuse, float32, verbatim }

    /// One exported tensor: its name and shape in the export layout, the dtype its bytes are in,
    /// and the stored dtype of the bundle tensor(s) it comes from.
    public struct Item: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        /// The bundle's stored dtype (I8 for dequantized int8 tensors).
        public var stored: DType
        public var bytes: @Sendable () throws -> RawBytes
        /// What a user should know about this tensor (nil: nothing).
        public var note: String?
    }

    /// The bundle's tensors under `scheme` (nil: canonical names). Parts of a tensor (row slices,
    /// swapped halves) and stacks of tensors are taken on whole rows, so blocks written verbatim stay
    /// whole; a stack whose members are stored in different types is written as float32 values
    /// (and carries a note saying so).
    public static func tensors(_ bundle: NativeBundle, scheme: ExportNaming?, int8: Int8Handling, blocks: BlockHandling) throws -> [Item] {
        var items: [Item] = []
        for extra in scheme?.extras ?? [] {
            items.append(Item(name: extra.name, dtype: .f32, shape: extra.shape, stored: .f32, bytes: {
                let v = try extra.values()
                return RawBytes(copying: v.withUnsafeBytes { Array($0) })
            }))
        }
        // Canonical tensors stacked into one exported tensor, gathered by exported name.
        struct Member { var slot: Int; var shape: [Int]; var dtype: DType; var view: TensorView; var part: TensorPart }
        var stacks: [String: [Member]] = [:]
        var stackSlots: [String: Int] = [:]
        var stackAt: [String: Int] = [:]
        for t in bundle.manifest.tensors {
            guard let view = bundle.view(t.name) else { continue }
            if view.dtype.block != nil && blocks == .refuse { throw ExportError.blockTypeNeedsDequantize(tensor: t.name, dtype: view.dtype) }
            let targets = scheme?.map(t.name, view.shape) ?? [ExportedTensor(t.name)]
            // Blocks are cut on whole rows only: a 1-D block tensor taken in parts is dequantized.
            let cutsBlocks = view.dtype.block != nil && view.shape.count < 2 && targets.contains { $0.part != .whole }
            let asFloat = (view.dtype == .i8 && int8 == .float32) || (view.dtype.block != nil && (blocks == .float32 || cutsBlocks))
            let dtype: DType = asFloat ? .f32 : view.dtype
            let rows = view.shape.first ?? 1
            for target in targets {
                var shape = view.shape
                if !shape.isEmpty { shape[0] = target.part.rows(of: rows) }
                if let slot = target.slot {
                    if stacks[target.name] == nil {
                        // The stacked tensor takes the place of its first member.
                        stackAt[target.name] = items.count
                        items.append(Item(name: target.name, dtype: dtype, shape: shape, stored: view.dtype, bytes: { RawBytes(copying: []) }))
                    }
                    stacks[target.name, default: []].append(Member(slot: slot, shape: shape, dtype: dtype, view: view, part: target.part))
                    stackSlots[target.name] = target.slots
                    continue
                }
                items.append(Item(name: target.name, dtype: dtype, shape: target.shape ?? shape, stored: view.dtype, bytes: {
                    try partBytes(target.part, of: view, as: dtype)
                }))
                if view.dtype == .i8 && !asFloat, let s = view.scale {
                    items.append(Item(name: target.name + ".scale", dtype: .f32, shape: [target.part.rows(of: rows)], stored: .f32, bytes: {
                        try part(target.part, of: s, rowBytes: 4, rows: rows)
                    }))
                }
            }
        }
        for (name, members) in stacks.sorted(by: { $0.key < $1.key }) {
            guard let at = stackAt[name], members.count == stackSlots[name],
                  Set(members.map(\.slot)) == Set(0..<members.count),
                  members.allSatisfy({ $0.shape.dropFirst() == members[0].shape.dropFirst() }) else {
                throw ExportError.refused("stacked tensor", "'\(name)' is missing some of its \(stackSlots[name] ?? 0) parts or they do not stack")
            }
            let sorted = members.sorted { $0.slot < $1.slot }
            let shape = [sorted.reduce(0) { $0 + $1.shape[0] }] + sorted[0].shape.dropFirst()
            // Members in different types (a small member kept, a large one quantized) meet as float32.
            let types = Set(sorted.map(\.dtype))
            let mixed = types.count > 1
            let dt = mixed ? DType.f32 : sorted[0].dtype
            let stored = sorted.map(\.view.dtype).min { bits($0) < bits($1) } ?? dt
            items[at] = Item(name: name, dtype: dt, shape: shape, stored: stored, bytes: {
                let parts = try sorted.map { try partBytes($0.part, of: $0.view, as: dt) }
                let out = OwnedBuffer(uninitializedCount: parts.reduce(0) { $0 + $1.count })
                var o = 0
                for p in parts {
                    if let b = p.buffer.baseAddress { (out.pointer + o).copyMemory(from: b, byteCount: p.count) }
                    o += p.count
                }
                return out.bytes
            }, note: mixed ? "'\(name)' stacks tensors stored as \(types.map(\.name).sorted().joined(separator: " and ")): written as F32 values" : nil)
        }
        return items
    }

    /// Bits per stored value (the least precise member names a stack's stored type).
    static func bits(_ d: DType) -> Double { d.block?.bitsPerValue ?? Double(d.itemSize * 8) }

    /// The bytes of `part` of `view` in `dtype` (the stored dtype, or F32 for dequantized values).
    static func partBytes(_ part: TensorPart, of view: TensorView, as dtype: DType) throws -> RawBytes {
        let rows = view.shape.first ?? 1
        let full = dtype == view.dtype ? view.bytes : floatBytes(view)
        let rowBytes = rows == 0 ? 0 : full.count / rows
        return try Self.part(part, of: full, rowBytes: rowBytes, rows: rows)
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

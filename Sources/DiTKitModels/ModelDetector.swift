// Which model a set of tensors is: the subtree that holds it, its family (each registered family
// recognises its own anchors and plans its own tensors), and how each canonical tensor is made
// from the source tensors. Loading is strict: after remapping, names and shapes must equal the
// architecture exactly, in both directions.
import DiTKitCore
import DiTKitFormats

/// How one canonical tensor is produced from source tensors (names are full source names).
public enum TensorRecipe: Sendable, Equatable {
    /// The source tensor as is.
    case copy(String)
    /// The source bytes under another shape (squeezed 1x1 attention convs).
    case reshape(String, [Int])
    /// Sources concatenated along the first dimension (diffusers q, k, v -> qkv).
    case concatRows([String])
    /// Rows `part` of `of` equal row blocks of a source (an original fused qkv -> q, k, v).
    case rowSlice(String, part: Int, of: Int)
    /// Rows `start ..< start + count` of a source's first dimension (uneven splits: FLUX's fused
    /// single-block `linear1` = q | k | v | mlp).
    case rowRange(String, start: Int, count: Int)
    /// Identical copies (diffusers' per-block embedders); every copy must be byte-identical.
    case foldIdentical([String])
    /// The source's two halves along the first dimension swapped (a final norm's [shift, scale]
    /// stored as [scale, shift]).
    case swapHalves(String)
    /// Values the family computes (DiT's fixed 2-D sin-cos position embedding, which diffusers does
    /// not store); the payload names the computation for provenance.
    case computed(String)

    /// Source tensor names this recipe reads.
    public var sources: [String] {
        switch self {
        case .copy(let s), .reshape(let s, _), .swapHalves(let s), .rowSlice(let s, _, _), .rowRange(let s, _, _): return [s]
        case .concatRows(let s), .foldIdentical(let s): return s
        case .computed: return []
        }
    }
}

/// One canonical tensor and its recipe.
public struct PlannedTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var recipe: TensorRecipe
}

/// Everything convert needs to know about the model in a checkpoint.
public struct ModelPlan: Sendable {
    public var configuration: ModelConfiguration
    /// Source naming scheme: `dit-official`, `dit-diffusers`, `vae-diffusers`, `vae-diffusers-legacy`, `vae-ldm`, …
    public var sourceNaming: String
    /// Dotted path of the selected subtree (`ema`, `state_dict.first_stage_model`), empty for the root.
    public var subtree: String
    /// Canonical tensors, canonical order.
    public var tensors: [PlannedTensor]

    public init(configuration: ModelConfiguration, sourceNaming: String, subtree: String = "", tensors: [PlannedTensor]) {
        self.configuration = configuration
        self.sourceNaming = sourceNaming
        self.subtree = subtree
        self.tensors = tensors
    }
}

/// What the user or the surroundings of a file tell about the model.
public struct DetectionHints: Sendable {
    /// `--select`: dotted path of the subtree.
    public var select: String?
    /// `--model`: a family name (`dit`, `vae`), an alias (`sd-vae`) or a variant (`DiT-XL/2`).
    public var model: String?
    /// `--heads` for widths whose head count cannot be inferred.
    public var numHeads: Int?
    /// `--image-size` in pixels (layouts that do not record it).
    public var imageSize: Int?
    /// A diffusers `config.json` found next to the weights.
    public var diffusersConfig: JSONValue?
    /// `args.model` of a train.py checkpoint.
    public var trainArgsModel: String?
    /// The latent scaling a denoiser in the same file implies for its autoencoder (an SD3 single
    /// file's VAE: 1.5305, shift 0.0609); set by detection.
    public var latentScaling: (scalingFactor: Double, shiftFactor: Double?)?
    /// `--scaling-factor` / `--shift-factor`: a VAE's latent scale and shift, which its weights do
    /// not record (they override config.json and DiTKit's layout rules).
    public var scalingFactor: Double?
    public var shiftFactor: Double?
    public init() {}
}

/// The source tensors as the detector sees them.
extension DetectionHints {
    /// What a GGUF's metadata says that its tensors cannot, where `general.architecture` names one of
    /// DiTKit's families: `<arch>.num_heads`, `<arch>.image_size`, `<arch>.scaling_factor` and
    /// `<arch>.shift_factor`; and, in a GGUF DiTKit wrote (`ditkit.variant`), the whole model.config
    /// under `<arch>.` standing in for a config.json (the families other than DiT name its members as
    /// diffusers does). Options and a config.json given by the user win; values that make no sense
    /// are ignored.
    mutating func adopt(_ g: GGUFFile) {
        guard case .string(let arch)? = g.value("general.architecture"),
              let family = ModelFamilies.registered.first(where: { $0.ggufArchitecture == arch }) else { return }
        if diffusersConfig == nil, g.value("ditkit.variant") != nil, family.ggufArchitecture != "dit" {
            let prefix = arch + "."
            let members: [(String, JSONValue)] = g.values.compactMap { kv in
                guard kv.key.hasPrefix(prefix), let v = Self.json(kv.value) else { return nil }
                return (String(kv.key.dropFirst(prefix.count)), v)
            }
            if !members.isEmpty { diffusersConfig = .object(members) }
        }
        func number(_ key: String) -> Double? {
            switch g.value(arch + "." + key) {
            case .u8(let v)?: return Double(v)
            case .u16(let v)?: return Double(v)
            case .u32(let v)?: return Double(v)
            case .i32(let v)?: return Double(v)
            case .u64(let v)?: return Double(v)
            case .i64(let v)?: return Double(v)
            // float32 as the shortest decimal that reads back to it (0.18215, not 0.18215000629...).
            case .f32(let v)?: return v.isFinite ? Double("\(v)") : nil
            case .f64(let v)?: return v.isFinite ? v : nil
            default: return nil
            }
        }
        func count(_ key: String, upTo limit: Double) -> Int? {
            guard let v = number(key), v >= 1, v <= limit, v == v.rounded() else { return nil }
            return Int(v)
        }
        if numHeads == nil { numHeads = count("num_heads", upTo: 65536) }
        if imageSize == nil, let s = count("image_size", upTo: 1_048_576), s % 8 == 0 { imageSize = s }
        guard family.role == .autoencoder else { return }
        if scalingFactor == nil, let s = number("scaling_factor"), s > 0 { scalingFactor = s }
        if shiftFactor == nil, let s = number("shift_factor") { shiftFactor = s }
    }

    /// A GGUF metadata value as JSON: numbers (float32 as the shortest decimal that reads back to
    /// it), booleans, strings and arrays of them; nil for anything else.
    private static func json(_ v: GGUFValue) -> JSONValue? {
        switch v {
        case .u8(let x): return .int(Int(x))
        case .i8(let x): return .int(Int(x))
        case .u16(let x): return .int(Int(x))
        case .i16(let x): return .int(Int(x))
        case .u32(let x): return .int(Int(x))
        case .i32(let x): return .int(Int(x))
        case .u64(let x): return x <= UInt64(Int.max) ? .int(Int(x)) : nil
        case .i64(let x): return .int(Int(x))
        case .f32(let x): return x.isFinite ? Double("\(x)").map { .double($0) } : nil
        case .f64(let x): return x.isFinite ? .double(x) : nil
        case .bool(let x): return .bool(x)
        case .string(let x): return .string(x)
        case .array(let items, _):
            let converted = items.compactMap(json)
            return converted.count == items.count ? .array(converted) : nil
        }
    }
}

public struct SourceTensor: Sendable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public init(name: String, dtype: DType, shape: [Int]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
    }
}

/// The tensors under one model root, by name relative to that root, in file order.
public struct SourceTensors: Sendable {
    /// Dotted path of the root (`ema`, `model.diffusion_model`), empty for the file's root.
    public let prefix: String
    public let order: [String]
    private let byName: [String: SourceTensor]
    /// Reads a tensor's values as float32 by full name, when the detector was given the file.
    let reader: (@Sendable (String) throws -> [Float])?

    public init(_ all: [SourceTensor], under prefix: String, reader: (@Sendable (String) throws -> [Float])? = nil) {
        self.prefix = prefix
        self.reader = reader
        let strip = prefix.isEmpty ? 0 : prefix.count + 1
        var names: [String] = []
        var map: [String: SourceTensor] = [:]
        for t in all where prefix.isEmpty || t.name.hasPrefix(prefix + ".") {
            let n = String(t.name.dropFirst(strip))
            if map[n] == nil { names.append(n) }
            map[n] = t
        }
        order = names
        byName = map
    }

    public subscript(_ name: String) -> SourceTensor? { byName[name] }
    public func contains(_ name: String) -> Bool { byName[name] != nil }

    /// The values of a relative name (float32), or nil when the detector works from names and shapes only.
    public func values(_ name: String) throws -> [Float]? {
        guard let reader, contains(name) else { return nil }
        return try reader(full(name))
    }

    /// The full source name of a relative name.
    public func full(_ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }

    /// The shape of `name`, which must exist with `rank` dimensions (read to learn the configuration).
    public func shape(_ name: String, rank: Int) throws -> [Int] {
        guard let t = byName[name] else { throw ModelError.notRecognised("missing '\(name)', needed to read the configuration") }
        guard t.shape.count == rank else { throw ModelError.inconsistent("'\(name)' has shape \(t.shape), expected rank \(rank)") }
        return t.shape
    }

    /// The number of distinct integer segments after `prefix` (`blocks.` -> 28).
    public func blockCount(prefix: String) -> Int {
        Self.blockCount(order, prefix: prefix)
    }

    static func blockCount(_ names: [String], prefix: String) -> Int {
        var indices = Set<Int>()
        for n in names where n.hasPrefix(prefix) {
            let rest = n.dropFirst(prefix.count)
            if let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]) { indices.insert(i) }
        }
        return indices.count
    }
}

/// Collects the recipe of every canonical tensor while a family reads a layout, then checks them
/// strictly against the architecture: every expected tensor planned with its shape, no planned
/// tensor the architecture lacks, and no source tensor left unused.
public struct PlanBuilder {
    public let source: SourceTensors
    private(set) var recipes: [String: (TensorRecipe, [Int])] = [:]
    private(set) var consumed = Set<String>()

    public init(_ source: SourceTensors) { self.source = source }

    /// Whether a canonical tensor has a recipe already.
    public func has(_ canonical: String) -> Bool { recipes[canonical] != nil }

    /// Plans `canonical` from relative source names; `shape` is the canonical shape it yields.
    public mutating func add(_ canonical: String, _ recipe: TensorRecipe, shape: [Int], consuming relative: [String]) throws {
        guard recipes[canonical] == nil else {
            throw ModelError.inconsistent("'\(relative.first ?? canonical)' and another tensor both map to '\(canonical)'")
        }
        recipes[canonical] = (recipe, shape)
        consumed.formUnion(relative)
    }

    /// `canonical` is the source tensor `relative` as it is.
    public mutating func copy(_ relative: String, as canonical: String) throws {
        guard let t = source[relative] else { return }
        try add(canonical, .copy(source.full(relative)), shape: t.shape, consuming: [relative])
    }

    /// `canonical` is `relative` reshaped (same bytes).
    public mutating func reshape(_ relative: String, as canonical: String, to shape: [Int]) throws {
        guard let t = source[relative] else { return }
        guard t.shape.reduce(1, *) == shape.reduce(1, *) else {
            throw ModelError.inconsistent("'\(relative)' has shape \(t.shape), which cannot become \(shape)")
        }
        try add(canonical, t.shape == shape ? .copy(source.full(relative)) : .reshape(source.full(relative), shape), shape: shape, consuming: [relative])
    }

    /// `canonical` is `parts` stacked along the first dimension (all present, same trailing shape).
    public mutating func concatRows(_ parts: [String], as canonical: String) throws {
        let shapes = parts.compactMap { source[$0]?.shape }
        guard shapes.count == parts.count, let first = shapes.first else { return }
        guard shapes.allSatisfy({ $0.count == first.count && $0.dropFirst() == first.dropFirst() }) else {
            throw ModelError.inconsistent("\(parts.joined(separator: ", ")) have shapes \(shapes) that cannot be stacked into '\(canonical)'")
        }
        try add(canonical, .concatRows(parts.map(source.full)), shape: [shapes.reduce(0) { $0 + $1[0] }] + first.dropFirst(), consuming: parts)
    }

    /// `canonical` is one of several identical copies (each must have the same shape; the converter checks the bytes).
    public mutating func foldIdentical(_ copies: [String], as canonical: String) throws {
        let present = copies.filter { source.contains($0) }
        guard let first = present.first, let t = source[first] else { return }
        for c in present where source[c]?.shape != t.shape {
            throw ModelError.inconsistent("copy '\(c)' has shape \(source[c]?.shape ?? []) but '\(first)' has \(t.shape)")
        }
        try add(canonical, .foldIdentical(present.map(source.full)), shape: t.shape, consuming: present)
    }

    /// The canonical tensors `parts` are equal row blocks of `relative`, in order.
    public mutating func splitRows(_ relative: String, into parts: [String]) throws {
        guard let t = source[relative] else { return }
        guard let rows = t.shape.first, rows % parts.count == 0 else {
            throw ModelError.inconsistent("'\(relative)' has shape \(t.shape): its rows cannot be split into \(parts.count) equal parts")
        }
        for (k, p) in parts.enumerated() {
            try add(p, .rowSlice(source.full(relative), part: k, of: parts.count), shape: [rows / parts.count] + t.shape.dropFirst(), consuming: [relative])
        }
    }

    /// The canonical tensors `parts` are consecutive row blocks of `relative` with `rows[k]` rows
    /// each, in order (an uneven split: FLUX's `linear1` into q, k, v and the MLP input). The sizes
    /// must add up to the source's rows.
    public mutating func splitRows(_ relative: String, sizes rows: [Int], into parts: [String]) throws {
        guard let t = source[relative] else { return }
        guard rows.count == parts.count, rows.allSatisfy({ $0 > 0 }), t.shape.first == rows.reduce(0, +) else {
            throw ModelError.inconsistent("'\(relative)' has shape \(t.shape): its rows cannot be split into \(rows)")
        }
        var start = 0
        for (p, n) in zip(parts, rows) {
            try add(p, .rowRange(source.full(relative), start: start, count: n), shape: [n] + t.shape.dropFirst(), consuming: [relative])
            start += n
        }
    }

    /// Marks a source tensor as used without planning a canonical tensor from it (a fixed buffer
    /// the family recomputes and has checked).
    public mutating func consume(_ relative: String) { consumed.insert(relative) }

    /// `canonical` is `relative` with the halves of its first dimension swapped.
    public mutating func swapHalves(_ relative: String, as canonical: String) throws {
        guard let t = source[relative] else { return }
        guard let rows = t.shape.first, rows % 2 == 0 else { throw ModelError.inconsistent("'\(relative)' has shape \(t.shape): its rows cannot be split in halves") }
        try add(canonical, .swapHalves(source.full(relative)), shape: t.shape, consuming: [relative])
    }

    /// `canonical` is computed by the family.
    public mutating func computed(_ canonical: String, _ what: String, shape: [Int]) throws {
        try add(canonical, .computed(what), shape: shape, consuming: [])
    }

    /// Renames every source tensor no recipe consumed yet through `table` (unmatched names stay as
    /// they are and are reported as unexpected by `finish` unless the architecture has them).
    public mutating func renameRemaining(_ table: NameRuleTable, levels: Int = 0) throws {
        for n in source.order where !consumed.contains(n) {
            guard let t = source[n] else { continue }
            let m = table.remap(n, levels: levels)
            var s = t.shape
            if m.transform == .squeezeTo2D, s.count > 2 {
                guard s.dropFirst(2).allSatisfy({ $0 == 1 }) else { throw ModelError.inconsistent("'\(n)' has shape \(s); expected trailing 1x1") }
                s = Array(s.prefix(2))
            }
            try add(m.name, s == t.shape ? .copy(source.full(n)) : .reshape(source.full(n), s), shape: s, consuming: [n])
        }
    }

    /// The canonical shape planned for `canonical`, if any.
    public func plannedShape(_ canonical: String) -> [Int]? { recipes[canonical]?.1 }
    /// Every canonical name planned so far.
    public var plannedNames: [String] { Array(recipes.keys) }

    /// Matches the recipes against the architecture in both directions, with shapes.
    public func finish(_ configuration: ModelConfiguration, sourceNaming: String) throws -> ModelPlan {
        let expected = configuration.tensorShapes()
        var missing: [String] = [], shapes: [String] = []
        var planned: [PlannedTensor] = []
        let expectedNames = Set(expected.map(\.name))
        for (name, shape) in expected {
            guard let (recipe, s) = recipes[name] else { missing.append(name); continue }
            if s != shape { shapes.append("\(name): \(s) instead of \(shape)") }
            planned.append(PlannedTensor(name: name, shape: shape, recipe: recipe))
        }
        var unexpected = recipes.keys.filter { !expectedNames.contains($0) }.sorted()
        unexpected += source.order.filter { !consumed.contains($0) && !expectedNames.contains($0) }
        guard missing.isEmpty, unexpected.isEmpty, shapes.isEmpty else {
            throw ModelError.mismatch(model: configuration.variant, missing: missing, unexpected: unexpected, shapes: shapes)
        }
        return ModelPlan(configuration: configuration, sourceNaming: sourceNaming, subtree: source.prefix, tensors: planned)
    }
}

/// Carries a container into a `@Sendable` reader (containers are thread-safe readers).
private final class ContainerBox: @unchecked Sendable {
    let container: any TensorContainer
    init(_ c: any TensorContainer) { container = c }
}

public enum ModelDetector {
    /// Prefixes (dotted paths) under which some family's anchor tensor sits, with those families in
    /// registry order.
    public static func candidateSubtrees(_ names: [String]) -> [(prefix: String, families: [any ModelFamily])] {
        var order: [String] = []
        var found: [String: Set<String>] = [:]
        for n in names {
            for f in ModelFamilies.registered {
                for a in f.anchors {
                    var prefix: String?
                    if n == a { prefix = "" } else if n.hasSuffix("." + a) { prefix = String(n.dropLast(a.count + 1)) }
                    guard let p = prefix else { continue }
                    if found[p] == nil { order.append(p) }
                    found[p, default: []].insert(f.name)
                }
            }
        }
        return order.map { p in (p, ModelFamilies.registered.filter { found[p]?.contains($0.name) ?? false }) }
    }

    /// The anchors of every family, for messages.
    static var anchorList: String {
        ModelFamilies.registered.flatMap { f in f.anchors.prefix(2).map { "'\($0)' (\(f.name))" } }.joined(separator: ", ")
    }

    /// Detects the model and plans every canonical tensor. Throws `ModelError`.
    /// `reader`, when given, reads a source tensor's values by full name (families that learn part
    /// of their configuration from fixed buffers use it: PixArt's position-embedding scale).
    public static func plan(_ all: [SourceTensor], hints: DetectionHints = DetectionHints(),
                            reader: (@Sendable (String) throws -> [Float])? = nil) throws -> ModelPlan {
        let (subtree, families) = try chooseSubtree(all.map(\.name), hints: hints)
        let local = SourceTensors(all, under: subtree, reader: reader)
        var hints = hints
        if hints.latentScaling == nil, families.contains(where: { $0.role == .autoencoder }) {
            // An autoencoder beside a denoiser (an SD3 single file's first_stage_model): the scaling the
            // denoiser's family ships its VAE with, when every such denoiser agrees. The denoiser's family
            // is the one whose layout its tensors form (several families' anchors may sit on one subtree:
            // SD3's and FLUX's diffusers names share `time_text_embed` and `context_embedder`).
            let implied = candidateSubtrees(all.map(\.name)).filter { $0.prefix != subtree }.compactMap { c in
                c.families.first { f in
                    f.companionAutoencoderScaling != nil && ((try? f.plan(SourceTensors(all, under: c.prefix), hints: DetectionHints())) ?? nil) != nil
                }?.companionAutoencoderScaling
            }
            if let first = implied.first,
               implied.allSatisfy({ $0.scalingFactor == first.scalingFactor && $0.shiftFactor == first.shiftFactor }) {
                hints.latentScaling = first
            }
        }
        // Each family whose anchors sit here, in order, until one recognises its layout.
        var plan: ModelPlan?
        for f in families {
            if let p = try f.plan(local, hints: hints) { plan = p; break }
        }
        guard var p = plan else {
            let names = families.map(\.title).joined(separator: " or ")
            throw ModelError.notRecognised("the tensors under '\(subtree.isEmpty ? "(root)" : subtree)' have some of \(names)'s names but form no layout DiTKit reads")
        }
        p.subtree = subtree
        try checkModelHint(p.configuration, hints.model)
        let dtypes = Dictionary(all.map { ($0.name, $0.dtype) }, uniquingKeysWith: { a, _ in a })
        for t in p.tensors {
            for s in t.recipe.sources where !(dtypes[s]?.isDequantizable ?? true) {
                throw ModelError.inconsistent("tensor '\(s)' has dtype \(dtypes[s].map { $0.name } ?? "?"); \(p.configuration.family.title) weights must be F32, F16, BF16, F64, F8_E4M3, F8_E5M2 or a ggml block type")
            }
        }
        return p
    }

    /// Detects the model in a container, reading a tensor's values only when a family needs them.
    public static func plan(_ container: any TensorContainer, hints given: DetectionHints = DetectionHints()) throws -> ModelPlan {
        var hints = given
        if let g = container as? GGUFFile { hints.adopt(g) }
        let sources = container.tensors.map { SourceTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape) }
        let index = Dictionary(container.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        let box = ContainerBox(container)
        let p = try plan(sources, hints: hints) { name in
            guard let i = index[name] else { throw ModelError.notRecognised("no tensor '\(name)'") }
            let e = box.container.tensors[i]
            guard e.dtype.isDequantizable else { throw ModelError.inconsistent("'\(name)' has dtype \(e.dtype.name), not a float or block type") }
            let bytes = try box.container.bytes(of: i)
            defer { box.container.release(i) }
            var out = [Float](repeating: 0, count: e.elementCount)
            bytes.withElements(of: UInt8.self) { raw in
                out.withUnsafeMutableBufferPointer { o in
                    if let b = raw.baseAddress, let ob = o.baseAddress {
                        ElementConversion.toFloat32(UnsafeRawPointer(b), dtype: e.dtype, count: e.elementCount, into: ob)
                    }
                }
            }
            return out
        }
        // A GGUF file that names one of DiTKit's architectures must hold that family's model.
        if let g = container as? GGUFFile, case .string(let arch)? = g.value("general.architecture"),
           let named = ModelFamilies.registered.first(where: { $0.ggufArchitecture == arch }), named.name != p.configuration.family.name {
            throw ModelError.inconsistent("general.architecture is '\(arch)' (\(named.title)) but the tensors are \(p.configuration.family.title)'s")
        }
        return p
    }

    /// The family a `--model` value asks for, if it names one (a family name or alias, or a variant).
    public static func requestedFamily(_ model: String?) -> (any ModelFamily)? {
        guard let m = model else { return nil }
        if let f = ModelFamilies.named(m) { return f }
        let l = m.lowercased()
        // A variant name: the family whose name starts it (`DiT-XL/2` -> dit, `PixArt-…` -> pixart).
        return ModelFamilies.registered.first { l.hasPrefix($0.name) }
    }

    static func chooseSubtree(_ names: [String], hints: DetectionHints) throws -> (String, [any ModelFamily]) {
        let candidates = candidateSubtrees(names)
        func listed(_ c: [(prefix: String, families: [any ModelFamily])]) -> String {
            c.map { ($0.prefix.isEmpty ? "(root)" : $0.prefix) + " (\($0.families.map(\.name).joined(separator: " or ")))" }.joined(separator: ", ")
        }
        let want = requestedFamily(hints.model)
        func ordered(_ fs: [any ModelFamily]) -> [any ModelFamily] {
            guard let want else { return fs }
            return fs.filter { $0.name == want.name }
        }
        if let s = hints.select {
            let sel = s == "." ? "" : s
            guard let hit = candidates.first(where: { $0.prefix == sel }) else {
                throw ModelError.notRecognised("--select \(s): no model DiTKit knows under that path (found: \(candidates.isEmpty ? "none" : listed(candidates)))")
            }
            let fs = ordered(hit.families)
            guard !fs.isEmpty else { throw ModelError.notRecognised("--model \(hints.model ?? ""): no \(want?.title ?? "") under '\(s)' (found: \(listed([hit])))") }
            return (hit.prefix, fs)
        }
        var filtered = candidates
        if let want {
            filtered = candidates.filter { $0.families.contains { $0.name == want.name } }
            if filtered.isEmpty {
                let found = candidates.isEmpty ? "no model DiTKit knows" : listed(candidates)
                throw ModelError.notRecognised("--model \(hints.model ?? ""): no \(want.title) in this file (found: \(found))")
            }
        }
        guard !filtered.isEmpty else {
            throw ModelError.notRecognised("no model DiTKit knows in this file: expected tensors such as \(anchorList)")
        }
        if filtered.count == 1 { return (filtered[0].prefix, ordered(filtered[0].families)) }
        // train.py checkpoints hold both `model` and `ema`: the EMA weights are the ones to use.
        if let ema = filtered.first(where: { $0.prefix == "ema" }) { return (ema.prefix, ordered(ema.families)) }
        // A single file with one denoiser beside autoencoders (SD3: model.diffusion_model and
        // first_stage_model): the denoiser; --model vae or --select picks the autoencoder.
        let denoisers = filtered.filter { $0.families.contains { $0.role == .denoiser } }
        if denoisers.count == 1, filtered.allSatisfy({ $0.prefix == denoisers[0].prefix || $0.families.allSatisfy { $0.role == .autoencoder } }) {
            return (denoisers[0].prefix, ordered(denoisers[0].families))
        }
        throw ModelError.needsOption("several models in one file (\(listed(filtered))); choose one with --select PATH")
    }

    static func checkModelHint(_ c: ModelConfiguration, _ hint: String?) throws {
        guard let h = hint else { return }
        if let f = ModelFamilies.named(h) {
            guard f.name == c.family.name else { throw ModelError.inconsistent("--model \(h): the weights are \(c.variant) (\(c.family.name))") }
            // An alias may also pin a configuration (`sd-vae`).
            if f.aliases.contains(h.lowercased()), !f.matches(model: h, c) {
                throw ModelError.inconsistent("--model \(h): the weights are \(c.variant)")
            }
            return
        }
        guard c.family.matches(model: h, c) else {
            let names = ModelFamilies.registered.map { f in ([f.name] + f.aliases).joined(separator: ", ") }.joined(separator: ", ")
            throw ModelError.inconsistent("--model \(h): the weights are \(c.variant); --model takes a family (\(names)) or the detected variant")
        }
    }
}

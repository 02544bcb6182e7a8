// `ditkit convert`: a DiT or SD-VAE checkpoint into a native bundle.
import ArgumentParser
import DiTKitConvert
import DiTKitCore
import DiTKitFormats
import DiTKitModels

extension StorageType: ExpressibleByArgument {
    /// Any usual spelling (`f16`, `F16`, `fp16`, `float16`, `half`, ...), see `init(spelling:)`.
    public init?(argument: String) { self.init(spelling: argument) }
}

/// Whether `--model` names something DiTKit knows: a family or one of its aliases (`dit`, `sd-vae`,
/// `pixart-sigma`, ...) or a named configuration of one (`DiT-XL/2`).
func isKnownModel(_ name: String) -> Bool {
    ModelFamilies.named(name) != nil || ModelFamilies.registered.contains { $0.configuration(named: name, imageSize: nil) != nil }
}

/// What `--model` accepts, for its error message.
var knownModels: String {
    ModelFamilies.registered.map { ([$0.name] + $0.aliases).joined(separator: ", ") }.joined(separator: ", ") + ", or a named architecture such as DiT-XL/2"
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a checkpoint (torch, safetensors, diffusers folder or GGUF) into a memory-mapped .ditkit bundle.",
        discussion: """
        Accepts official DiT state dicts and train.py checkpoints (the 'ema' subtree by default), diffusers \
        DiTTransformer2DModel weights, and the SD VAE in diffusers (current or legacy) and original LDM naming, \
        bare or inside a full Stable Diffusion checkpoint. The model is detected from names and shapes; loading \
        is strict. The output appears only when complete.
        """
    )

    @Argument(help: "The checkpoint(s) to convert (.pt/.pth/.bin/.ckpt/.safetensors/.gguf).")
    var sources: [String]

    @Option(name: .shortAndLong, help: "The bundle to write (NAME.ditkit); with several sources, the directory to write NAME.ditkit bundles into.")
    var output: String

    @Option(help: "Conversions to run at once when several sources are given (each gets cores/jobs threads).")
    var jobs: Int = 1

    @Option(help: "Storage type: f32, f16, bf16, int8 (weight-only, per output channel), a ggml block type (q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k: the family's policy chooses the tensors, the others keep their source type), source (every tensor as the source stores it; a GGUF file's blocks verbatim) or auto (block types chosen per tensor to reach --min-sqnr). Default: source for a GGUF file, else f32. F16, fp16, float16, half, Q4_K... work too.")
    var dtype: StorageType?

    @Option(help: "With a block type or auto: the type of the tensors kept out of the blocks: f16, bf16 or f32 (default: each keeps its source type, losslessly).")
    var keepDtype: StorageType?

    @Flag(help: "With a block type or auto: quantize the blocks' adaLN modulation linears too (DiT adaLN_modulation; SD3 and FLUX norm1, norm1_context, the single blocks' norm), as ComfyUI-GGUF's converter does. Smaller files (FLUX.1-dev in Q4_K: 6.8 GB instead of 11.4), a less precise model; kept in high precision by default.")
    var quantizeModulations = false

    @Option(help: "With --dtype auto: the output SQNR (dB) the converted model must reach against the source, confirmed with verify --against.")
    var minSqnr: Double?

    @Option(help: "With --dtype auto: the largest acceptable weights size in bytes; refused (exit 1) when the budget cannot be met within it.")
    var maxSize: Int?

    @Option(help: "Dotted path of the subtree to convert (e.g. ema, model, state_dict.first_stage_model).")
    var select: String?

    @Option(help: "Insist on a model: a family (dit, vae, pixart, flux), an alias (sd-vae, sdxl-vae, flux-vae) or a variant such as DiT-XL/2. Fails if the weights disagree.")
    var model: String?

    @Option(parsing: .singleValue, help: "Keep tensors matching this glob pattern in float32 (repeatable), e.g. 'final_layer.*'.")
    var keep: [String] = []

    @Option(help: "Attention heads, for DiT widths where they cannot be inferred.")
    var heads: Int?

    @Option(help: "Image size in pixels, for DiT weights in diffusers naming without a config.json.")
    var imageSize: Int?

    @Flag(help: "Convert a source holding NaN or infinite values (refused otherwise); the manifest records their count per tensor.")
    var allowNonfinite = false
    @Option(help: "VAE latent scaling factor, which the weights do not record (default: config.json, else the layout's: SD 0.18215, BFL's FLUX ae 0.3611).")
    var scalingFactor: Double?

    @Option(help: "VAE latent shift factor (default: config.json, else the layout's: none for SD, 0.1159 for BFL's FLUX ae).")
    var shiftFactor: Double?

    @Flag(help: "Hash the source file again even when its SHA-256 is remembered from an earlier conversion, identify or fetch of the same unchanged file (in $DITKIT_CACHE/digests, else $XDG_CACHE_HOME/ditkit/digests, else ~/.cache/ditkit/digests).")
    var rehash = false

    @Flag(help: "Move the bundle into place as soon as it is written, without waiting for the disk (no fsync), as cp and safetensors' save_file do: faster, but an operating system crash or power loss in the next half minute can leave a bundle whose weights fail their checksums (ditkit check finds them). A crash of ditkit itself still leaves nothing behind.")
    var noSync = false

    @Flag(help: "Replace an existing bundle at the output path.")
    var force = false

    @Flag(help: "Print JSON instead of text: a list with one object per source (its summary, or its error).")
    var json = false

    func validate() throws {
        if sources.isEmpty { throw ValidationError("give at least one checkpoint") }
        if jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if let h = heads, h <= 0 { throw ValidationError("--heads must be positive") }
        if let s = imageSize, s <= 0 || s % 8 != 0 { throw ValidationError("--image-size must be a positive multiple of 8") }
        if let m = model, !isKnownModel(m) {
            throw ValidationError("--model \(m) is not a model DiTKit knows; use \(knownModels)")
        }
        if !keep.isEmpty && (dtype ?? .f32) == .f32 {
            throw ValidationError("--keep has no effect with --dtype f32: every tensor is stored in float32 already")
        }
        if !keep.isEmpty && dtype == .source {
            throw ValidationError("--keep has no effect with --dtype source: every tensor keeps its source type already")
        }
        if let k = keepDtype {
            guard [.f16, .bf16, .f32].contains(k) else { throw ValidationError("--keep-dtype must be f16, bf16 or f32") }
            guard dtype?.blockType != nil || dtype == .auto else { throw ValidationError("--keep-dtype applies to the block types and auto only") }
        }
        if quantizeModulations && !(dtype?.blockType != nil || dtype == .auto) {
            throw ValidationError("--quantize-modulations applies to the block types and auto only")
        }
        if dtype == .auto && minSqnr == nil { throw ValidationError("--dtype auto needs --min-sqnr DB (the output SQNR to reach)") }
        if dtype != .auto && (minSqnr != nil || maxSize != nil) { throw ValidationError("--min-sqnr and --max-size apply to --dtype auto only") }
        if let m = minSqnr, !m.isFinite { throw ValidationError("--min-sqnr must be a number of dB") }
        if let m = maxSize, m <= 0 { throw ValidationError("--max-size must be a positive number of bytes") }
        if let s = scalingFactor, !(s > 0 && s.isFinite) { throw ValidationError("--scaling-factor must be a positive number") }
        if let s = shiftFactor, !s.isFinite { throw ValidationError("--shift-factor must be a number") }
    }

    func run() throws {
        try reportingErrors {
            var o = ConversionOptions()
            o.dtype = dtype
            if let m = minSqnr { o.auto = AutoPrecisionOptions(minSQNR: m, maxSize: maxSize) }
            o.keepDType = keepDtype?.floatDType
            o.quantizeModulations = quantizeModulations
            o.keep = keep
            o.allowNonfinite = allowNonfinite
            o.force = force
            o.digests = .standard
            o.rehash = rehash
            o.durable = !noSync
            o.hints.select = select
            o.hints.model = model
            o.hints.numHeads = heads
            o.hints.imageSize = imageSize
            o.hints.scalingFactor = scalingFactor
            o.hints.shiftFactor = shiftFactor
            let text = !json
            let results: [Result<ConversionSummary, Error>]
            if sources.count == 1 {
                results = [Result { try Converter.convert(source: sources[0], output: output, options: o, progress: TerminalProgress()) }]
                if case .success(let s) = results[0] {
                    if text { writeOut(ConversionReport.text(s)) }
                    for w in ConversionReport.warnings(s) { printError(w) }
                }
            } else {
                results = try Converter.convertMany(sources: sources, directory: output, options: o, jobs: jobs) { _, r in
                    guard case .success(let s) = r else { return }
                    if text { writeOut(ConversionReport.text(s)) }
                    for w in ConversionReport.warnings(s) { printError(w) }
                }
            }
            if json {
                writeOut(JSONWriter.string(.array(zip(sources, results).map { source, r in
                    switch r {
                    case .success(let s): return s.json
                    case .failure(let e): return .object([("source", .object([("file", .string(source))])), ("error", .string(String(describing: e)))])
                    }
                })))
            }
            // The exit status of the run: refused input wins over the other failures.
            var worst: Error?
            for case .failure(let e) in results {
                printError("ditkit: error: \(e)")
                if worst == nil || exitStatus(of: e) == Exit.refused { worst = e }
            }
            if let worst { throw exitStatus(of: worst) }
        }
    }
}

enum ConversionReport {
    static func text(_ s: ConversionSummary) -> String {
        var out = "wrote \(s.output): \(s.variant) (\(s.family)), \(s.dtype.rawValue)\n"
        out += "  source: \(s.sourceNaming) naming" + (s.subtree.isEmpty ? "" : ", subtree \(TerminalText.quoted(s.subtree))") + "\n"
        out += "  tensors: \(s.tensors) (" + s.storedTypes.map { "\($0.1) \($0.0.name)" }.joined(separator: ", ") + "), parameters: \(grouped(s.parameters))\n"
        out += "  bytes: \(humanBytes(s.bytesIn)) in, \(humanBytes(s.bytesOut)) out, \(fixed(s.seconds, 2)) s"
            + (s.sourceHashRemembered ? " (source SHA-256 remembered, not read again; --rehash reads it)" : "") + "\n"
        if !s.lossy.isEmpty {
            let sqnrs = s.lossy.compactMap { e in e.error.sqnrDB.map { (e.name, $0) } }
            let worst = sqnrs.min { $0.1 < $1.1 }
            let maxRel = s.lossy.map(\.error.relL2).max() ?? 0
            let flushed = s.lossy.reduce(0) { $0 + $1.error.flushedToZero }
            out += "  lossy tensors: \(s.lossy.count); worst SQNR \(worst.map { "\(fixed($0.1, 1)) dB (\(TerminalText.escaped($0.0)))" } ?? "n/a"); max relative L2 \(scientific(maxRel)); values flushed to zero: \(flushed)\n"
            // The whole-tensor figure averages over rows; the worst single row is said too.
            let rows = s.lossy.compactMap { e in e.error.worstRow.map { (e.name, $0) } }
            if let w = rows.min(by: { $0.1.sqnrDB < $1.1.sqnrDB }) {
                out += "  worst row: \(fixed(w.1.sqnrDB, 1)) dB (\(TerminalText.escaped(w.0)) row \(w.1.row))\n"
            }
            let ruined = s.lossy.filter { $0.error.ruinedRows != nil }
            if !ruined.isEmpty {
                let count = ruined.reduce(0) { $0 + ($1.error.ruinedRows?.count ?? 0) }
                out += "  rows that lost most of their values: \(count) in \(ruined.count) tensor\(ruined.count == 1 ? "" : "s") (see the warnings)\n"
            }
        }
        if !s.kept.isEmpty {
            // Block types: how many tensors the family's policy (or their rows) kept out of the type, by reason.
            var reasons: [(String, Int)] = []
            for k in s.kept {
                let key = "\(k.reason) -> \(k.dtype.name)"
                if let i = reasons.firstIndex(where: { $0.0 == key }) { reasons[i].1 += 1 } else { reasons.append((key, 1)) }
            }
            out += "  not in \(s.dtype.rawValue.uppercased()): \(s.kept.count) tensors: " + reasons.map { "\($0.1) \(TerminalText.escaped($0.0))" }.joined(separator: "; ") + "\n"
        }
        if !s.nonFinite.isEmpty {
            let total = s.nonFinite.reduce(0) { $0 + $1.count }
            out += "  NaN or infinite source values kept: \(total) in " + s.nonFinite.map { "\($0.name) (\($0.count))" }.joined(separator: ", ") + "\n"
        }
        return out
    }

    /// One warning per tensor with rows that lost most of their values (printed on stderr).
    static func warnings(_ s: ConversionSummary) -> [String] {
        s.lossy.compactMap { e in
            guard let r = e.error.ruinedRows else { return nil }
            let name = TerminalText.escaped(e.name)
            let whole = e.error.sqnrDB.map { "its SQNR (\(fixed($0, 1)) dB) does not show it" } ?? "the whole tensor's figures do not show it"
            let why: String
            if s.dtype == .int8 { why = ": an outlier sets the row's int8 scale" }
            else if let f = s.dtype.floatDType, f != .f32 { why = ": they are below the smallest \(f.name) value" }
            else { why = "" }
            return "ditkit: WARNING: \(name): \(r.count) row\(r.count == 1 ? "" : "s") lost most of \(r.count == 1 ? "its" : "their") values "
                + "(row \(r.row): \(grouped(r.flushedToZero)) of its \(grouped(r.values)) values stored as 0\(why)); "
                + "\(whole); keep it in float32 with --keep '\(name)'"
        }
    }
}

// The conversion pipeline: detect the model, plan every canonical tensor and its place in the
// bundle, let the workers stream them (ConversionWork.swift), then write the manifest.
import Dispatch
import DiTKitCore
import DiTKitFormats
import DiTKitModels

public enum Converter {
    /// Converts `source` into a bundle at `output`. Throws `FileError` (input refused),
    /// `ConvertError`, `OutputError`. On any failure nothing is left at `output` (or the
    /// previous bundle is left untouched).
    public static func convert(source: String, output: String, options: ConversionOptions,
                               progress: ProgressReporter? = nil) throws -> ConversionSummary {
        if options.dtype == .auto && options.autoChoices == nil {
            guard let budget = options.auto else { throw ConvertError.autoNeedsBudget }
            return try AutoPrecision.convert(source: source, output: output, options: options, auto: budget, progress: progress)
        }
        let clock = ContinuousClock()
        let start = clock.now
        let (source, container, plan, _) = try open(source, options: options)
        // GGUF files (quantized or not) keep their types unless asked otherwise.
        let dtype = options.dtype ?? (container is GGUFFile || container.tensors.contains { $0.dtype.block != nil } ? .source : .f32)

        // Stored dtype of every tensor, then the layout. Every --keep pattern must keep something.
        let config = plan.configuration
        let unmatched = options.keep.filter { p in !plan.tensors.contains { globMatch(p, $0.name) } }
        if !unmatched.isEmpty {
            let example = plan.tensors.first { $0.name.contains(".") && $0.shape.count > 1 }?.name ?? plan.tensors.first?.name ?? ""
            throw FileError(path: source, ConvertError.keepMatchesNothing(unmatched, model: config.variant, example: example))
        }
        let index = Dictionary(container.tensors.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
        let storage = StoragePlan.make(plan: plan, container: container, index: index, dtype: dtype, options: options)
        let stored = storage.dtypes
        var sizes: [Int] = []
        for (t, d) in zip(plan.tensors, stored) {
            sizes.append(try d.byteCount(shape: t.shape))
            if d == .i8 { sizes.append(t.shape[0] * 4) }
        }
        let writer = try BundleWriter(path: output, force: options.force, alignment: options.alignment, durable: options.durable)
        do {
            let (offsets, total) = try writer.layout(sizes)
            var recordOffsets: [(Int, Int?)] = []
            var k = 0
            for d in stored {
                if d == .i8 { recordOffsets.append((offsets[k], offsets[k + 1])); k += 2 } else { recordOffsets.append((offsets[k], nil)); k += 1 }
            }
            let work = ConversionWork(container: container, index: index, plan: plan, stored: stored, offsets: recordOffsets,
                                      writer: writer, progress: progress, tokens: config, allowNonFinite: options.allowNonfinite)
            let totalBytes = plan.tensors.flatMap(\.recipe.sources).compactMap { index[$0] }.reduce(0) { $0 + container.tensors[$1].byteCount }
            progress?.begin("converting", total: totalBytes, unit: .bytes)
            let shards = (container as? ShardedSafetensors)?.shards.map(\.path) ?? []
            let hashFiles = shards.isEmpty ? [container.path] : shards
            let (hashes, remembered) = try work.run(threads: options.threads, hashFiles: hashFiles, digests: options.digests, rehash: options.rehash)
            let fileHash = shards.isEmpty ? hashes[0] : try SHA256Hasher.hex(file: container.path)
            progress?.finish()
            let nonFinite = work.nonFinite()
            if !nonFinite.isEmpty && !options.allowNonfinite { throw FileError(path: source, ConvertError.nonFinite(nonFinite)) }
            let overflows = work.overflows()
            if !overflows.isEmpty { throw FileError(path: source, ConvertError.overflow(overflows, dtype: dtype.floatDType?.name ?? dtype.blockType?.name ?? "F32")) }

            let manifest = BundleManifest(
                alignment: options.alignment, family: config.family.name, variant: config.variant, config: config.json,
                naming: config.canonicalNaming, provenance: provenance(container: container, plan: plan, sha256: fileHash,
                                                                      shards: Array(zip(shards, hashes)), zoo: options.zooEntry),
                dtypePolicy: policy(dtype, options, config, storage), weightsBytes: total, tensors: work.records())
            try writer.finish(manifest)
            let params = plan.tensors.reduce(0) { $0 + $1.shape.reduce(1, *) }
            var counts: [DType: Int] = [:]
            for d in stored { counts[d, default: 0] += 1 }
            let lossy = manifest.tensors.compactMap { t in t.error.map { (t.name, $0) } }
            return ConversionSummary(sourcePath: source, output: output, variant: config.variant, family: config.family.name, sourceNaming: plan.sourceNaming,
                                     subtree: plan.subtree, dtype: dtype, tensors: plan.tensors.count, parameters: params,
                                     bytesIn: (shards.isEmpty ? [container.path] : shards).reduce(0) { $0 + (FileSystem.fileSize($1) ?? 0) }, bytesOut: total,
                                     seconds: Double((clock.now - start).components.attoseconds) / 1e18 + Double((clock.now - start).components.seconds),
                                     storedTypes: counts.sorted { $0.key.name < $1.key.name }.map { ($0.key, $0.value) }, lossy: lossy,
                                     nonFinite: nonFinite, kept: storage.decisions, sourceHashRemembered: remembered == hashFiles.count)
        } catch {
            writer.discard()
            if error is ModelError || error is ConvertError || error is CheckpointError { throw FileError(path: source, error) }
            throw error
        }
    }

    /// Where the weights came from: the file (for a model folder, its weights file; for shards, the
    /// index, with every shard's name, size and SHA-256).
    /// Opens a conversion's source (a folder resolved to its weights; a bundle refused) and plans
    /// its model from the tensors, the hints, a config.json beside it and a training checkpoint's args.
    static func open(_ source: String, options: ConversionOptions) throws -> (path: String, container: any TensorContainer, plan: ModelPlan, hints: DetectionHints) {
        let resolved = LoadedModel.resolve(source, hints: options.hints)
        let container = try Checkpoint.open(resolved)
        if container is NativeBundle { throw FileError(path: resolved, ConvertError.sourceIsBundle) }
        var hints = options.hints
        if hints.diffusersConfig == nil { hints.diffusersConfig = LoadedModel.diffusersConfig(besides: resolved) }
        if hints.trainArgsModel == nil { hints.trainArgsModel = container.objects.first { $0.name == "args.model" }?.value }
        let plan = try FileError.wrapping(resolved) { try ModelDetector.plan(container, hints: hints) }
        return (resolved, container, plan, hints)
    }

    static func provenance(container: any TensorContainer, plan: ModelPlan, sha256: String, shards: [(String, String)], zoo: String?) -> JSONValue {
        let source = container.path
        var s: [(String, JSONValue)] = [
            ("file", .string(FileSystem.baseName(source))), ("bytes", .int(FileSystem.fileSize(source) ?? 0)), ("sha256", .string(sha256)),
            ("container", .string(container.format.rawValue)), ("naming", .string(plan.sourceNaming)), ("subtree", .string(plan.subtree)),
        ]
        if let g = container as? GGUFFile {
            // What the GGUF says it is, and the ggml types it holds.
            var info: [(String, JSONValue)] = []
            for key in ["general.architecture", "general.name"] {
                if case .string(let v)? = g.value(key) { info.append((String(key.dropFirst("general.".count)), .string(v))) }
            }
            var types: [String: Int] = [:]
            for t in g.tensors { types[t.dtype.name, default: 0] += 1 }
            info.append(("types", .object(types.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })))
            s.append(("gguf", .object(info)))
        }
        if !shards.isEmpty {
            s.append(("shards", .array(shards.map { path, hash in
                .object([("file", .string(FileSystem.baseName(path))), ("bytes", .int(FileSystem.fileSize(path) ?? 0)), ("sha256", .string(hash))])
            })))
        }
        var m: [(String, JSONValue)] = [("source", .object(s))]
        if let zoo { m.append(("zoo", .object([("id", .string(zoo))]))) }
        return .object(m)
    }

    static func policy(_ dtype: StorageType, _ o: ConversionOptions, _ config: ModelConfiguration, _ storage: StoragePlan) -> JSONValue {
        var m: [(String, JSONValue)] = [("dtype", .string(dtype.rawValue))]
        if let f = dtype.floatDType { m.append(("float_dtype", .string(f.name))) }
        m.append(("rounding", .string("nearest-even")))
        if let type = dtype.blockType {
            m.append(("blocks", StoragePlan.json(type, policy: o.blockPolicy(config), decisions: storage.decisions, keepDType: o.keepDType)))
        }
        if dtype == .auto && o.autoRecord != .null { m.append(("auto", o.autoRecord)) }
        if dtype == .int8 {
            m.append(("int8", .object([("scheme", .string("symmetric-per-output-channel")), ("axis", .int(0)), ("scale_dtype", .string("F32")),
                                       ("rounding", .string("nearest-even")), ("quantized", .string(config.int8PolicyDescription))])))
        }
        m.append(("keep", .array(o.keep.map { .string($0) })))
        return .object(m)
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension Converter {
    /// The bundle name for a source: its base name without extension, or the folder name for a
    /// diffusers `diffusion_pytorch_model.*` file (`sd-vae-ft-ema/diffusion_pytorch_model.safetensors` -> `sd-vae-ft-ema`).
    public static func bundleName(for source: String) -> String {
        var base = FileSystem.baseName(source)
        if base.hasPrefix("diffusion_pytorch_model.") || base.hasPrefix("model.") {
            let parent = FileSystem.baseName(FileSystem.parentDirectory(source))
            if !parent.isEmpty && parent != "." && parent != "/" { base = parent }
        } else if let dot = base.lastIndex(of: "."), dot != base.startIndex {
            base = String(base[..<dot])
        }
        return base + ".ditkit"
    }

    /// Converts several sources into `directory`, `jobs` at a time; each job gets
    /// `cores / jobs` worker threads, so memory stays bounded per job. Results are in input order.
    public static func convertMany(sources: [String], directory: String, options: ConversionOptions, jobs: Int,
                                   finished: (@Sendable (Int, Result<ConversionSummary, Error>) -> Void)? = nil) throws -> [Result<ConversionSummary, Error>] {
        let names = sources.map(bundleName(for:))
        if let dup = Dictionary(grouping: names, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            throw ConvertError.duplicateOutput(dup)
        }
        try FileSystem.makeDirectories(directory)
        let jobs = max(1, min(jobs, sources.count))
        var perJob = options
        perJob.threads = max(1, options.threads / jobs)
        return parallelMap(sources.count, workers: jobs) { k in
            let r = Result { try convert(source: sources[k], output: FileSystem.join(directory, names[k]), options: perJob) }
            finished?(k, r)
            return r
        }
    }
}

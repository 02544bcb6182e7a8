// The conversion pipeline: detect the model, plan every canonical tensor, then stream: each
// worker takes one tensor, reads its source bytes from the mapping, converts, hashes and writes
// it at its precomputed offset, and releases the source pages. A handful of tensors are in
// memory at a time, whatever the model size.
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
        let source = LoadedModel.resolve(source, hints: options.hints)
        let container = try Checkpoint.open(source)
        if container is NativeBundle { throw FileError(path: source, ConvertError.sourceIsBundle) }
        var hints = options.hints
        if hints.diffusersConfig == nil { hints.diffusersConfig = LoadedModel.diffusersConfig(besides: source) }
        if hints.trainArgsModel == nil { hints.trainArgsModel = container.objects.first { $0.name == "args.model" }?.value }
        let plan = try FileError.wrapping(source) { try ModelDetector.plan(container, hints: hints) }
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
        let writer = try BundleWriter(path: output, force: options.force, alignment: options.alignment)
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
            let hashes = try work.run(threads: options.threads, hashFiles: shards.isEmpty ? [container.path] : shards)
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
                                     nonFinite: nonFinite, kept: storage.decisions)
        } catch {
            writer.discard()
            if error is ModelError || error is ConvertError || error is CheckpointError { throw FileError(path: source, error) }
            throw error
        }
    }

    /// Where the weights came from: the file (for a model folder, its weights file; for shards, the
    /// index, with every shard's name, size and SHA-256).
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
            m.append(("blocks", StoragePlan.json(type, policy: config.blockPolicy, decisions: storage.decisions, keepDType: o.keepDType)))
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

/// The shared state of one conversion's workers.
final class ConversionWork: @unchecked Sendable {
    let container: any TensorContainer
    let index: [String: Int]
    let plan: ModelPlan
    let stored: [DType]
    let offsets: [(Int, Int?)]
    let writer: BundleWriter
    let progress: ProgressReporter?
    let configuration: ModelConfiguration
    let allowNonFinite: Bool

    private var results: [BundleTensor?]
    private var overflowList: [(Int, String, Int)] = []
    private var nonFiniteList: [(Int, String, Int)] = []
    private var mutex = pthread_mutex_t()
    private let errors = ErrorBox()

    init(container: any TensorContainer, index: [String: Int], plan: ModelPlan, stored: [DType], offsets: [(Int, Int?)],
         writer: BundleWriter, progress: ProgressReporter?, tokens configuration: ModelConfiguration, allowNonFinite: Bool) {
        self.allowNonFinite = allowNonFinite
        self.container = container
        self.index = index
        self.plan = plan
        self.stored = stored
        self.offsets = offsets
        self.writer = writer
        self.progress = progress
        self.configuration = configuration
        results = Array(repeating: nil, count: plan.tensors.count)
        pthread_mutex_init(&mutex, nil)
    }

    deinit { pthread_mutex_destroy(&mutex) }

    /// Converts every tensor and hashes the source files (one, or every shard); returns their SHA-256s.
    func run(threads: Int, hashFiles: [String]) throws -> [String] {
        // Largest tensors first; the whole-file hash (task -1) starts at once beside them.
        let order = [-1] + plan.tensors.indices.sorted { plan.tensors[$0].shape.reduce(1, *) > plan.tensors[$1].shape.reduce(1, *) }
        let next = AtomicCounter()
        var fileHashes: [String] = []
        let hashBox = ErrorBox()
        DispatchQueue.concurrentPerform(iterations: max(1, threads)) { _ in
            while !errors.hasError {
                let k = next.increment()
                if k >= order.count { return }
                let i = order[k]
                if i < 0 {
                    do { fileHashes = try hashFiles.map { try SHA256Hasher.hex(file: $0) } } catch { hashBox.set(error); errors.set(error) }
                    continue
                }
                do { try convert(i) } catch { errors.set(error) }
            }
        }
        if let e = errors.error { throw e }
        return fileHashes
    }

    func overflows() -> [(name: String, count: Int)] {
        overflowList.sorted { $0.0 < $1.0 }.map { ($0.1, $0.2) }
    }

    /// Tensors whose source holds NaN or infinite values, canonical order.
    func nonFinite() -> [(name: String, count: Int)] {
        nonFiniteList.sorted { $0.0 < $1.0 }.map { ($0.1, $0.2) }
    }

    func records() -> [BundleTensor] { results.compactMap { $0 } }

    private func source(_ name: String) throws -> (Int, TensorEntry, RawBytes) {
        guard let i = index[name] else { throw CheckpointError.inconsistent("source tensor '\(name)' disappeared") }
        return (i, container.tensors[i], try container.bytes(of: i))
    }

    private func convert(_ i: Int) throws {
        let t = plan.tensors[i]
        let target = stored[i]
        let (offset, scaleOffset) = offsets[i]
        let n = t.shape.reduce(1, *)
        var sourceRecords: [SourceTensorRecord] = []
        var transform = "copy"
        var parts: [(entry: TensorEntry, bytes: RawBytes)] = []
        var computed: [Float]?
        var slices = false   // parts are pieces of a tensor, not whole source tensors
        var used: [Int] = []
        defer { for u in used { container.release(u) } }

        switch t.recipe {
        case .copy(let s), .reshape(let s, _):
            let (si, e, b) = try source(s)
            used.append(si)
            parts = [(e, b)]
            if case .reshape = t.recipe { transform = "reshape" }
        case .concatRows(let names):
            transform = "concat-rows"
            for s in names {
                let (si, e, b) = try source(s)
                used.append(si)
                parts.append((e, b))
            }
        case .foldIdentical(let names):
            transform = "fold-identical"
            let (si, e, b) = try source(names[0])
            used.append(si)
            parts = [(e, b)]
            let hash = SHA256Hasher.hex(b)
            for s in names {
                let (sj, e2, b2) = try source(s)
                used.append(sj)
                guard e2.dtype == e.dtype, b.contentEquals(b2) else {
                    throw ConvertError.foldMismatch(names[0], s)
                }
                sourceRecords.append(SourceTensorRecord(name: s, dtype: e2.dtype, shape: e2.shape, sha256: hash))
            }
        case let .rowSlice(s, part, of):
            // Rows of a fused source (an original qkv): one slice of the source's bytes.
            transform = "row-slice \(part)/\(of)"
            let (si, e, b) = try source(s)
            used.append(si)
            sourceRecords = [SourceTensorRecord(name: e.name, dtype: e.dtype, shape: e.shape, sha256: SHA256Hasher.hex(b))]
            var sliceShape = e.shape
            sliceShape[0] /= of
            let slice = try TensorEntry(name: e.name, dtype: e.dtype, shape: sliceShape)
            parts = [(slice, RawBytes(owner: b.owner, buffer: UnsafeRawBufferPointer(rebasing: b.buffer[(part * slice.byteCount)..<((part + 1) * slice.byteCount)])))]
            slices = true
        case let .rowRange(s, start, count):
            // Rows of an unevenly fused source (FLUX's linear1): one slice of the source's bytes.
            transform = "row-range \(start)+\(count)"
            let (si, e, b) = try source(s)
            used.append(si)
            sourceRecords = [SourceTensorRecord(name: e.name, dtype: e.dtype, shape: e.shape, sha256: SHA256Hasher.hex(b))]
            guard let rows = e.shape.first, start >= 0, count > 0, start + count <= rows else {
                throw CheckpointError.inconsistent("'\(s)' has shape \(e.shape): no rows \(start)..<\(start + count)")
            }
            var sliceShape = e.shape
            sliceShape[0] = count
            let slice = try TensorEntry(name: e.name, dtype: e.dtype, shape: sliceShape)
            let rowBytes = slice.byteCount / count
            parts = [(slice, RawBytes(owner: b.owner, buffer: UnsafeRawBufferPointer(rebasing: b.buffer[(start * rowBytes)..<((start + count) * rowBytes)])))]
            slices = true
        case .swapHalves(let s):
            // The halves of the first dimension swapped: two parts, second half first.
            transform = "swap-halves"
            let (si, e, b) = try source(s)
            used.append(si)
            sourceRecords = [SourceTensorRecord(name: e.name, dtype: e.dtype, shape: e.shape, sha256: SHA256Hasher.hex(b))]
            var halfShape = e.shape
            halfShape[0] /= 2
            let half = try TensorEntry(name: e.name, dtype: e.dtype, shape: halfShape)
            let mid = half.byteCount
            parts = [(half, RawBytes(owner: b.owner, buffer: UnsafeRawBufferPointer(rebasing: b.buffer[mid...]))),
                     (half, RawBytes(owner: b.owner, buffer: UnsafeRawBufferPointer(rebasing: b.buffer[..<mid])))]
            slices = true
        case .computed(let what):
            transform = "computed-" + what
            computed = try plan.configuration.family.computedTensor(t.name, plan.configuration)
            guard computed?.count == n else { throw CheckpointError.inconsistent("computed \(t.name) has the wrong size") }
        }
        if sourceRecords.isEmpty {
            sourceRecords = parts.map { SourceTensorRecord(name: $0.entry.name, dtype: $0.entry.dtype, shape: $0.entry.shape, sha256: SHA256Hasher.hex($0.bytes)) }
        }
        let sourceDType = parts.first?.entry.dtype ?? .f32
        let sameType = parts.allSatisfy { $0.entry.dtype == target }
        // NaN and infinities: reported (refused unless allowed) and left out of the error figures.
        let nonFinite = parts.reduce(0) { n, p in
            n + withExtendedLifetime(p.bytes) { p.bytes.buffer.baseAddress.map { NonFinite.count($0, dtype: p.entry.dtype, count: p.entry.elementCount) } ?? 0 }
        }
        if nonFinite > 0 {
            // Neither int8 nor the block types can store them (blocks copied verbatim keep what they hold).
            if (target == .i8 || (target.block != nil && !sameType)) && allowNonFinite {
                throw ConvertError.nonFiniteInt8(name: t.name, count: nonFinite, dtype: target.name)
            }
            pthread_mutex_lock(&mutex)
            nonFiniteList.append((i, t.name, nonFinite))
            pthread_mutex_unlock(&mutex)
            // The conversion will be refused: no quantizer needs to see these values.
            if target == .i8 || (target.block != nil && !sameType) { return }
        }

        var storedHash: String
        var error: ConversionError?
        var scaleRecord: StoredRecord?
        if sameType && !parts.isEmpty {
            // Bytes go through unchanged (possibly in several parts).
            var position = offset
            var hasher = SHA256Hasher()
            for (k, p) in parts.enumerated() {
                if !slices, let (file, range) = container.verbatimRange(of: used[k]) {
                    try writer.copy(from: file, range: range, at: position)
                } else {
                    try withExtendedLifetime(p.bytes) { try writer.write(p.bytes.buffer, at: position) }
                }
                if parts.count > 1 || slices { withExtendedLifetime(p.bytes) { hasher.update(p.bytes.buffer) } }
                position += p.bytes.count
            }
            storedHash = parts.count == 1 && !slices ? sourceRecords[0].sha256 : hasher.finalizeHex()
        } else {
            // Widen to float32 (exact from F16/BF16; F64 is rounded here and measured). A single
            // aligned F32 source is used in place, without a copy.
            var floats: OwnedBuffer?
            let fp: UnsafeMutablePointer<Float>
            var acc = ErrorAccumulator()
            var lossyWiden = false
            if parts.count == 1, parts[0].entry.dtype == .f32, parts[0].bytes.isAligned(to: 4), let base = parts[0].bytes.buffer.baseAddress {
                fp = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Float.self))
            } else {
                let f = OwnedBuffer(uninitializedCount: n * 4)
                floats = f
                fp = f.pointer.assumingMemoryBound(to: Float.self)
            }
            if let v = computed {
                v.withUnsafeBufferPointer { fp.update(from: $0.baseAddress!, count: n) }
            } else if floats != nil {
                var position = 0
                for p in parts {
                    let m = p.entry.elementCount
                    if p.entry.dtype == .f64 {
                        lossyWiden = true
                        p.bytes.withElements(of: Double.self) { acc.merge(Narrowing.toF32($0, fp + position)) }
                    } else {
                        p.bytes.withElements(of: UInt8.self) { raw in
                            ElementConversion.toFloat32(UnsafeRawPointer(raw.baseAddress!), dtype: p.entry.dtype, count: m, into: fp + position)
                        }
                    }
                    position += m
                }
            }
            let src = UnsafeBufferPointer(start: fp, count: n)
            let out: OwnedBuffer
            switch target {
            case .f32:
                guard let f = floats else { throw CheckpointError.inconsistent("no float32 buffer for \(t.name)") }
                out = f
                if lossyWiden { error = acc.figures }
            case .f16, .bf16:
                out = OwnedBuffer(uninitializedCount: n * 2)
                // Row by row (rows = first dimension) so that each row's figures are seen too.
                let rows = t.shape.count >= 2 ? t.shape[0] : 1
                let narrowed = target == .f16 ? Narrowing.toF16(src, rows: rows, out.pointer.assumingMemoryBound(to: UInt16.self))
                                              : Narrowing.toBF16(src, rows: rows, out.pointer.assumingMemoryBound(to: UInt16.self))
                if sourceDType != target || lossyWiden {
                    // From an F64 source the error has two stages: rounding to float32, then narrowing
                    // (the row figures are the narrowing's).
                    var total = narrowed
                    if lossyWiden { total = acc; total.merge(narrowed); total.rows = narrowed.rows }
                    error = total.figures
                    if narrowed.overflow > 0 { recordOverflow(i, t.name, narrowed.overflow) }
                }
            case .i8:
                let rows = t.shape.first ?? 1
                out = OwnedBuffer(uninitializedCount: n)
                let scales = OwnedBuffer(uninitializedCount: rows * 4)
                error = Narrowing.toInt8(src, rows: rows, out.pointer.assumingMemoryBound(to: Int8.self), scales.pointer.assumingMemoryBound(to: Float.self)).figures
                guard let so = scaleOffset else { throw CheckpointError.inconsistent("no scale offset for \(t.name)") }
                try writer.write(UnsafeRawBufferPointer(start: scales.pointer, count: rows * 4), at: so)
                scaleRecord = StoredRecord(dtype: .f32, shape: [rows], offset: so, bytes: rows * 4,
                                           sha256: SHA256Hasher.hex(UnsafeRawBufferPointer(start: scales.pointer, count: rows * 4)))
            case let d where d.block != nil:
                let q = try BlockConversion.quantize(src, shape: t.shape, to: d)
                out = q.bytes
                error = q.error
                // A block scale is float16: values past its range give infinite scales.
                if q.error.overflow > 0 { recordOverflow(i, t.name, q.error.overflow) }
            default:
                throw CheckpointError.inconsistent("cannot store \(t.name) as \(target)")
            }
            let bytes = UnsafeRawBufferPointer(start: out.pointer, count: try target.byteCount(shape: t.shape))
            try writer.write(bytes, at: offset)
            storedHash = SHA256Hasher.hex(bytes)
            withExtendedLifetime(parts) {}
        }
        let record = BundleTensor(name: t.name,
                                  stored: StoredRecord(dtype: target, shape: t.shape, offset: offset, bytes: try target.byteCount(shape: t.shape), sha256: storedHash),
                                  sources: sourceRecords, transform: transform, error: error, scale: scaleRecord, nonFinite: nonFinite)
        pthread_mutex_lock(&mutex)
        results[i] = record
        pthread_mutex_unlock(&mutex)
        progress?.advance(parts.reduce(0) { $0 + $1.bytes.count })
    }

    private func recordOverflow(_ i: Int, _ name: String, _ count: Int) {
        pthread_mutex_lock(&mutex)
        overflowList.append((i, name, count))
        pthread_mutex_unlock(&mutex)
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

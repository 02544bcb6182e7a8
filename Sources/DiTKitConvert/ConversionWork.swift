// The workers of one conversion. One task hashes the whole source file (SHA-256, in file order);
// the others take the planned tensors in source-file order and stream each one in steps of whole
// rows: a step's source bytes are read once (pread into a buffer that stays in the cache; mapped
// views only where a reader must assemble the bytes), and from that buffer they are checked for
// NaN and infinities, fed to the source tensor's XXH3-128, widened into a small float buffer,
// stored (narrowed, quantized, or passed through unchanged), hashed again as stored bytes where
// they differ, written at the tensor's precomputed offset (narrowed and quantized steps gathered up
// to 1 MiB a write: two workers writing 128 KiB steps of f16 to one file took turns at its lock
// 10,000 times for DiT-XL/2, sleeping and waking each time) and handed to the disk's writeback. When
// the hash runs beside the conversion, a step read from one place in the file is read into a slot of
// the hash's feed (HashFeed) and handed on to the hash once converted, so the hash's core only hashes.
// No thread maps and unmaps pages under another (which costs both of them TLB flushes and the
// page-table lock), and memory is a few steps per worker, whatever the model size.
import Dispatch
import DiTKitCore
import DiTKitFormats
import DiTKitModels
#if canImport(Glibc)
import Glibc
#endif

/// Buffers of one worker, reused for every tensor it converts.
final class ConversionScratch {
    /// Values per step (256 KiB of float32): small enough that a step's source, its stored bytes and
    /// its float32 values stay in a core's L2 cache from the read through the checks, the hashes and
    /// the conversion to the write (with 4 MiB steps every pass went to memory: DiT-XL/2 to f16
    /// without fsync took 3.1-3.9 s against 1.6-2.2 s), large enough that the calls per step cost
    /// little. Writeback is started in larger pieces (`WriteBehind`).
    static let stepElements = 1 << 16

    private(set) var capacity = 0
    private var floatBuffer: OwnedBuffer?
    private var backBuffer: OwnedBuffer?
    private var outBuffer: OwnedBuffer?
    private var rawBuffer: OwnedBuffer?

    /// Widened source values of a step.
    var floats: UnsafeMutablePointer<Float> { floatBuffer!.pointer.assumingMemoryBound(to: Float.self) }
    /// Block types: the stored values read back, for the error figures.
    var back: UnsafeMutablePointer<Float> { backBuffer!.pointer.assumingMemoryBound(to: Float.self) }
    /// Stored bytes of the steps not yet written (`outBytes`; at least one step of 4 bytes a value).
    var out: UnsafeMutableRawPointer { outBuffer!.pointer }
    /// Bytes `out` holds: stored bytes of several steps are written together (one `pwrite`, one turn
    /// of the file's lock, for up to this much).
    private(set) var outBytes = 0
    static let outBatch = 1 << 20
    /// Source bytes of a step read from the file (at most 8 bytes a value).
    var raw: UnsafeMutableRawPointer { rawBuffer!.pointer }

    /// Makes room for `elements` values per step.
    func reserve(_ elements: Int) {
        guard elements > capacity else { return }
        capacity = max(elements, ConversionScratch.stepElements)
        floatBuffer = OwnedBuffer(uninitializedCount: capacity * 4)
        backBuffer = OwnedBuffer(uninitializedCount: capacity * 4)
        outBytes = max(capacity * 4, ConversionScratch.outBatch)
        outBuffer = OwnedBuffer(uninitializedCount: outBytes)
        rawBuffer = OwnedBuffer(uninitializedCount: capacity * 8)
    }
}

/// The written ranges of one tensor, handed to the disk's writeback (`BundleWriter.writeBehind`) in
/// pieces of at least `piece` bytes: one call per 256 KiB step made the disk's queue, and the
/// worker waiting on it, the bottleneck.
struct WriteBehind {
    let writer: BundleWriter
    var piece = 4 << 20
    private var pending: Range<Int>?

    init(writer: BundleWriter) { self.writer = writer }

    /// Adds bytes just written; a range that does not continue the pending one starts a new one.
    mutating func add(_ range: Range<Int>) {
        if let p = pending, p.upperBound == range.lowerBound {
            pending = p.lowerBound..<range.upperBound
        } else {
            flush()
            pending = range
        }
        if let p = pending, p.count >= piece { flush() }
    }

    /// Starts the writeback of what is pending.
    mutating func flush() {
        if let p = pending { writer.writeBehind(p) }
        pending = nil
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
    /// XXH3-128 of whole source tensors that are read in slices (a fused qkv gives three tensors).
    private var sourceDigests: [Int: String] = [:]
    private var mutex = pthread_mutex_t()
    private let errors = ErrorBox()
    /// Where converters hand the source bytes they read to the whole-file hash (when it runs beside
    /// them), and the index of each mapped file by its descriptor.
    private var feed: HashFeed?
    private var feedFiles: [Int32: Int] = [:]

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

    /// How far (bytes) the whole-file hash may read ahead of the conversion: within it, the pages
    /// the hash brings in are still cached when the conversion reads them, so a file larger than
    /// the page cache is read from the disk once.
    static let hashLead = 1 << 30

    /// Converts every tensor and hashes the source files (one, or every shard); returns their
    /// SHA-256s and how many of them `digests` remembered (those files are not read for their
    /// hash; `rehash` hashes every file again). Each hash made is remembered in `digests`.
    func run(threads: Int, hashFiles: [String], digests: FileDigests?, rehash: Bool) throws -> (sha256: [String], remembered: Int) {
        // The whole-file hash (task 0) starts at once; tensors follow in the order of their bytes
        // in the source, so the hash and the conversion read the same part of the file at about
        // the same time (one read from the disk when the file is not cached).
        let (tensorOrder, keys) = fileOrder()
        let mapped = container.mappedFiles
        let viaMapping = mapped.count == hashFiles.count && zip(mapped, hashFiles).allSatisfy { $0.path == $1 }
        func descriptor(_ f: Int) -> Int32? { viaMapping && mapped[f].descriptor >= 0 ? mapped[f].descriptor : nil }
        func identity(_ f: Int) -> FileIdentity? { descriptor(f).flatMap { FileIdentity(descriptor: $0) } ?? FileIdentity(path: hashFiles[f]) }
        let identities = hashFiles.indices.map(identity)
        let known: [String?] = hashFiles.indices.map { f in
            guard let digests, !rehash else { return nil }
            return identities[f].flatMap(digests.sha256)
        }
        let remembered = known.count { $0 != nil }
        var fileHashes = known.compactMap { $0 }
        let order = (remembered < hashFiles.count ? [-1] : []) + tensorOrder
        let next = AtomicCounter()
        // The (file, offset) of the last tensor handed out, which the hash does not outrun by more
        // than `hashLead` (with one worker there is no one to wait for).
        let started = Locked<(Int, Int)>((0, 0))
        let pace = threads > 1
        if pace && viaMapping && remembered < hashFiles.count && mapped.allSatisfy({ $0.descriptor >= 0 }) {
            feed = HashFeed(files: Set(hashFiles.indices.filter { known[$0] == nil }))
            for (f, m) in mapped.enumerated() { feedFiles[m.descriptor] = f }
        }
        defer { feed = nil }
        DispatchQueue.concurrentPerform(iterations: max(1, threads)) { _ in
            let scratch = ConversionScratch()
            while !errors.hasError {
                let k = next.increment()
                if k >= order.count { started.withLock { $0 = (Int.max, Int.max) }; return }
                let i = order[k]
                if i < 0 {
                    defer { self.feed?.close() }
                    do {
                        fileHashes = try hashFiles.indices.map { f in
                            if let sha = known[f] { return sha }
                            let hash = {
                                guard viaMapping else { return try SHA256Hasher.hex(file: hashFiles[f]) }
                                let lead: ((Range<Int>) -> Void)? = !pace ? nil : { range in
                                    while !self.errors.hasError {
                                        let (sf, so) = started.withLock { $0 }
                                        if sf > f || (sf == f && so > range.lowerBound - ConversionWork.hashLead) { return }
                                        usleep(2000)
                                    }
                                }
                                if let feed = self.feed {
                                    return try feed.sha256(file: f, descriptor: mapped[f].descriptor, count: mapped[f].count, path: mapped[f].path,
                                                           pace: lead, cancelled: { self.errors.hasError })
                                }
                                return try SHA256Hasher.hex(mapped: mapped[f], pace: lead)
                            }
                            guard let digests else { return try hash() }
                            return try digests.sha256(path: hashFiles[f], descriptor: descriptor(f), rehash: true, hash: hash).sha256
                        }
                    } catch { errors.set(error) }
                    continue
                }
                started.withLock { $0 = (keys[i].0, keys[i].1) }
                do { try convert(i, scratch) } catch { errors.set(error) }
            }
        }
        if let e = errors.error { throw e }
        // The recorded SHA-256s (remembered or hashed) and the bundle are of one version of each file.
        for f in hashFiles.indices where identities[f] != nil && identity(f) != identities[f] {
            throw FileWrittenWhileReading(path: hashFiles[f])
        }
        return (fileHashes, remembered)
    }

    /// Planned tensors by the position of their first source's bytes (mapped file, offset), then
    /// by source index; computed tensors last. Also each tensor's (file, offset) key.
    private func fileOrder() -> ([Int], [(Int, Int, Int)]) {
        let files = container.mappedFiles
        func key(_ i: Int) -> (Int, Int, Int) {
            guard let s = plan.tensors[i].recipe.sources.first, let si = index[s] else { return (Int.max, Int.max, i) }
            if let (file, range) = container.verbatimRange(of: si) {
                return (files.firstIndex { $0 === file } ?? 0, range.lowerBound, si)
            }
            return (0, Int.max, si)
        }
        let keys = plan.tensors.indices.map(key)
        return (plan.tensors.indices.sorted { keys[$0] < keys[$1] }, keys)
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

    /// Where source tensor `si` lies verbatim in a file that can be read with pread: (descriptor,
    /// first byte, path).
    private func fileSpan(_ si: Int) -> (fd: Int32, offset: Int, path: String)? {
        guard let (file, range) = container.verbatimRange(of: si), file.descriptor >= 0 else { return nil }
        return (file.descriptor, range.lowerBound, file.path)
    }

    /// XXH3-128 of a whole source tensor read in slices, computed once per source (read in steps
    /// into `buffer` of `capacity` bytes when it lies verbatim in a file).
    private func wholeSourceDigest(_ si: Int, _ bytes: RawBytes, _ scratch: ConversionScratch) throws -> String {
        pthread_mutex_lock(&mutex)
        let known = sourceDigests[si]
        pthread_mutex_unlock(&mutex)
        if let known { return known }
        let digest: String
        if let span = fileSpan(si) {
            scratch.reserve(ConversionScratch.stepElements)
            let h = XXH3Hasher(), chunk = scratch.capacity * 8
            var at = 0
            while at < bytes.count {
                let n = min(chunk, bytes.count - at)
                try RegularFile.read(span.fd, into: scratch.raw, count: n, at: span.offset + at, path: span.path)
                h.update(UnsafeRawBufferPointer(start: scratch.raw, count: n))
                at += n
            }
            digest = h.finalizeHex()
        } else {
            digest = ChecksumAlgorithm.xxh3_128.hex(releasing: bytes)
        }
        pthread_mutex_lock(&mutex)
        sourceDigests[si] = digest
        pthread_mutex_unlock(&mutex)
        return digest
    }

    /// A run of source elements, in the order the stored tensor takes them.
    private struct Segment {
        let dtype: DType
        let bytes: RawBytes
        let elements: Int
        /// The source tensor's checksum, fed as the segment is read (whole source tensors only).
        let hasher: XXH3Hasher?
        /// Where `bytes` lie verbatim in a file: read from there with pread instead of through the mapping.
        let file: (fd: Int32, offset: Int, path: String)?

        /// Byte offset of element `e` (a whole number of blocks for a block type).
        func byteOffset(_ e: Int) -> Int { dtype.storedBytes(e) }
    }

    /// Where a source record's checksum comes from.
    private enum Digest {
        case segment(Int)
        case value(String)
    }

    private func convert(_ i: Int, _ scratch: ConversionScratch) throws {
        let t = plan.tensors[i]
        let target = stored[i]
        let (offset, scaleOffset) = offsets[i]
        let n = t.shape.reduce(1, *)
        var pending: [(name: String, dtype: DType, shape: [Int], digest: Digest)] = []
        var transform = "copy"
        var segments: [Segment] = []
        var used: [Int] = []
        defer { for u in used { container.release(u) } }

        func whole(_ si: Int, _ e: TensorEntry, _ b: RawBytes) {
            pending.append((e.name, e.dtype, e.shape, .segment(segments.count)))
            segments.append(Segment(dtype: e.dtype, bytes: b, elements: e.elementCount, hasher: XXH3Hasher(), file: fileSpan(si)))
        }
        func slice(_ si: Int, _ e: TensorEntry, _ b: RawBytes, _ bytes: Range<Int>, elements: Int) {
            segments.append(Segment(dtype: e.dtype, bytes: RawBytes(owner: b.owner, buffer: UnsafeRawBufferPointer(rebasing: b.buffer[bytes])),
                                    elements: elements, hasher: nil, file: fileSpan(si).map { ($0.fd, $0.offset + bytes.lowerBound, $0.path) }))
        }

        switch t.recipe {
        case .copy(let s), .reshape(let s, _):
            let (si, e, b) = try source(s)
            used.append(si)
            whole(si, e, b)
            if case .reshape = t.recipe { transform = "reshape" }
        case .concatRows(let names):
            transform = "concat-rows"
            for s in names {
                let (si, e, b) = try source(s)
                used.append(si)
                whole(si, e, b)
            }
        case .foldIdentical(let names):
            transform = "fold-identical"
            let (si, e, b) = try source(names[0])
            used.append(si)
            whole(si, e, b)
            pending.removeAll()
            for s in names {
                let (sj, e2, b2) = try source(s)
                used.append(sj)
                guard e2.dtype == e.dtype, b.contentEquals(b2) else {
                    throw ConvertError.foldMismatch(names[0], s)
                }
                pending.append((s, e2.dtype, e2.shape, .segment(0)))
            }
        case let .rowSlice(s, part, of):
            // Rows of a fused source (an original qkv): one slice of the source's bytes.
            transform = "row-slice \(part)/\(of)"
            let (si, e, b) = try source(s)
            used.append(si)
            pending = [(e.name, e.dtype, e.shape, .value(try wholeSourceDigest(si, b, scratch)))]
            let rows = e.shape.first ?? 1
            guard of > 0, rows % of == 0, e.byteCount % of == 0 else {
                throw CheckpointError.inconsistent("'\(s)' has shape \(e.shape): its rows do not split in \(of)")
            }
            let size = e.byteCount / of
            slice(si, e, b, (part * size)..<((part + 1) * size), elements: e.elementCount / of)
        case let .rowRange(s, start, count):
            // Rows of an unevenly fused source (FLUX's linear1): one slice of the source's bytes.
            transform = "row-range \(start)+\(count)"
            let (si, e, b) = try source(s)
            used.append(si)
            pending = [(e.name, e.dtype, e.shape, .value(try wholeSourceDigest(si, b, scratch)))]
            guard let rows = e.shape.first, start >= 0, count > 0, start + count <= rows else {
                throw CheckpointError.inconsistent("'\(s)' has shape \(e.shape): no rows \(start)..<\(start + count)")
            }
            let rowBytes = e.byteCount / rows, rowElements = e.elementCount / rows
            slice(si, e, b, (start * rowBytes)..<((start + count) * rowBytes), elements: count * rowElements)
        case .swapHalves(let s):
            // The halves of the first dimension swapped: two segments, second half first.
            transform = "swap-halves"
            let (si, e, b) = try source(s)
            used.append(si)
            pending = [(e.name, e.dtype, e.shape, .value(try wholeSourceDigest(si, b, scratch)))]
            guard let rows = e.shape.first, rows % 2 == 0 else {
                throw CheckpointError.inconsistent("'\(s)' has shape \(e.shape): no halves to swap")
            }
            let mid = e.byteCount / 2
            slice(si, e, b, mid..<e.byteCount, elements: e.elementCount / 2)
            slice(si, e, b, 0..<mid, elements: e.elementCount / 2)
        case .computed(let what):
            transform = "computed-" + what
            let values = try plan.configuration.family.computedTensor(t.name, plan.configuration)
            guard values.count == n else { throw CheckpointError.inconsistent("computed \(t.name) has the wrong size") }
            let buffer = OwnedBuffer(uninitializedCount: n * 4)
            values.withUnsafeBytes { buffer.pointer.copyMemory(from: $0.baseAddress!, byteCount: n * 4) }
            segments = [Segment(dtype: .f32, bytes: buffer.bytes, elements: n, hasher: nil, file: nil)]
        }
        guard segments.reduce(0, { $0 + $1.elements }) == n else {
            throw CheckpointError.inconsistent("the sources of \(t.name) hold \(segments.reduce(0) { $0 + $1.elements }) values, its shape \(t.shape) needs \(n)")
        }

        let sourceDType = segments.first?.dtype ?? .f32
        let passThrough = segments.allSatisfy { $0.dtype == target }
        // One whole source stored unchanged: its stored checksum is its source checksum.
        let storedIsSource = passThrough && segments.count == 1 && segments[0].hasher != nil
        let storedHasher = storedIsSource ? nil : XXH3Hasher()
        // int8 and block types cannot hold NaN or infinities (blocks copied verbatim keep what they hold).
        let quantizes = (target == .i8 || target.block != nil) && !passThrough
        let lossyWiden = !passThrough && segments.contains { $0.dtype == .f64 }
        // Single float32 source: widened values are the source itself, as read (from a file into the
        // step buffer, or an aligned mapped view).
        let inPlace = !passThrough && segments.count == 1 && sourceDType == .f32 && (segments[0].file != nil || segments[0].bytes.isAligned(to: 4))
        // Narrowed to F16 or BF16 from float32, float16 or bfloat16 (whose widened values are NaN
        // or infinite exactly where the source is): the narrowing counts NaN and infinities as it
        // goes, without a pass of its own over the source.
        let countedByNarrowing = (target == .f16 || target == .bf16) && !passThrough
            && segments.allSatisfy { [.f32, .f16, .bf16].contains($0.dtype) }

        // Steps of whole rows: an outer row for int8 (its scale), whole blocks for block types.
        let unit = max(1, t.shape.count >= 2 ? t.shape.dropFirst().reduce(1, *) : n)
        // int8 scales are per row of a matrix (or of a convolution's output channels).
        if target == .i8 && t.shape.count < 2 { throw CheckpointError.inconsistent("cannot store \(t.name) (shape \(t.shape)) as int8: it has no rows") }
        let step = unit >= ConversionScratch.stepElements ? unit : ConversionScratch.stepElements / unit * unit
        scratch.reserve(step)
        let rows = t.shape.first ?? 1
        // Per-row figures (worst row, ruined rows) for matrices narrowed to F16/BF16/int8.
        let trackRows = t.shape.count >= 2 && rows > 1
        var rowFigures = RowTracker()
        let scales: OwnedBuffer? = target == .i8 ? OwnedBuffer(uninitializedCount: rows * 4) : nil

        var widenError = ErrorAccumulator()
        var storeError = ErrorAccumulator()
        var overflow = 0
        var nonFinite = 0
        var refused = false   // NaN or infinities met on the way to int8 or a block type
        var segment = 0, within = 0   // the reading position: segment, element in it
        var done = 0
        // A step read from one place in a file is read into a slot of the hash's feed, and handed
        // to the whole-file hash once converted.
        var lent: (slot: Int, pointer: UnsafeMutableRawPointer)?
        defer { if let lent { feed?.withdraw(lent.slot) } }
        var behind = WriteBehind(writer: writer)
        // Narrowed and quantized steps are stored one after another in `scratch.out` and written
        // together once it is full (or the tensor is done): (first byte in the file, bytes held).
        var held = (at: 0, count: 0)
        func writeHeld() throws {
            guard held.count > 0 else { return }
            let bytes = UnsafeRawBufferPointer(start: scratch.out, count: held.count)
            try writer.write(bytes, at: held.at)
            behind.add(held.at..<(held.at + held.count))
            held.count = 0
        }
        let stepOut = target.storedBytes(step)   // the most one step can add
        while done < n {
            let count = min(step, n - done)
            if let feed, segment < segments.count, let f = segments[segment].file, count <= segments[segment].elements - within,
               let file = feedFiles[f.fd] {
                let s = segments[segment]
                lent = feed.borrow(file: file, offset: f.offset + s.byteOffset(within), count: s.byteOffset(within + count) - s.byteOffset(within),
                                   cancelled: { self.errors.hasError })
            }
            // Read the step's source elements, segment by segment.
            var filled = 0
            var readBytes = 0
            var mapped: [RawBytes] = []   // pieces read through a mapping, released after the step
            var first: UnsafeRawPointer?  // where the step's first piece is
            while filled < count {
                let s = segments[segment]
                let take = min(count - filled, s.elements - within)
                let span = s.byteOffset(within)..<s.byteOffset(within + take)
                let piece: UnsafeRawBufferPointer
                if let f = s.file {
                    let dst = (lent?.pointer ?? scratch.raw) + readBytes
                    try RegularFile.read(f.fd, into: dst, count: span.count, at: f.offset + span.lowerBound, path: f.path)
                    piece = UnsafeRawBufferPointer(start: dst, count: span.count)
                } else {
                    piece = UnsafeRawBufferPointer(rebasing: s.bytes.buffer[span])
                    mapped.append(RawBytes(owner: s.bytes.owner, buffer: piece))
                }
                if first == nil { first = piece.baseAddress }
                try withExtendedLifetime(s.bytes) {
                    guard let base = piece.baseAddress else { return }
                    if !countedByNarrowing { nonFinite += NonFinite.count(base, dtype: s.dtype, count: take) }
                    s.hasher?.update(piece)
                    if passThrough {
                        storedHasher?.update(piece)
                        let at = offset + target.storedBytes(done + filled)
                        try writer.write(piece, at: at)
                    } else if !inPlace && !refused {
                        if s.dtype == .f64 {
                            widenError.merge(Narrowing.toF32(UnsafeBufferPointer(start: base.assumingMemoryBound(to: Double.self), count: take),
                                                             scratch.floats + filled))
                        } else {
                            ElementConversion.toFloat32(base, dtype: s.dtype, count: take, into: scratch.floats + filled)
                        }
                    }
                }
                readBytes += piece.count
                filled += take
                within += take
                if within == s.elements { segment += 1; within = 0 }
            }
            if nonFinite > 0 && quantizes && !refused {
                // Neither int8 nor the block types can store them: the conversion will be refused
                // (or stops here with --allow-nonfinite); keep counting, store nothing more.
                if allowNonFinite { throw ConvertError.nonFiniteInt8(name: t.name, count: nonFinite, dtype: target.name) }
                refused = true
            }
            if !passThrough && !refused {
                let src: UnsafeMutablePointer<Float> = inPlace && first != nil
                    ? UnsafeMutablePointer(mutating: first!.assumingMemoryBound(to: Float.self))
                    : scratch.floats
                let values = UnsafeBufferPointer(start: src, count: count)
                let bytes: UnsafeRawBufferPointer
                let at: Int
                switch target {
                case .f32:
                    bytes = UnsafeRawBufferPointer(start: src, count: count * 4)
                    at = offset + done * 4
                case .f16, .bf16:
                    let o = (scratch.out + held.count).assumingMemoryBound(to: UInt16.self)
                    let r = trackRows ? count / unit : 1
                    let a = target == .f16 ? Narrowing.toF16(values, rows: r, track: trackRows, o)
                                           : Narrowing.toBF16(values, rows: r, track: trackRows, o)
                    storeError.merge(a)
                    if let rt = a.rows { rowFigures.merge(rt, firstRow: done / unit) }
                    overflow += a.overflow
                    if countedByNarrowing { nonFinite += a.nonFinite }
                    bytes = UnsafeRawBufferPointer(start: o, count: count * 2)
                    at = offset + done * 2
                case .i8:
                    let r = count / unit, first = done / unit
                    let a = Narrowing.toInt8(values, rows: r, track: trackRows, (scratch.out + held.count).assumingMemoryBound(to: Int8.self),
                                             scales!.pointer.assumingMemoryBound(to: Float.self) + first)
                    storeError.merge(a)
                    if let rt = a.rows { rowFigures.merge(rt, firstRow: first) }
                    bytes = UnsafeRawBufferPointer(start: scratch.out + held.count, count: count)
                    at = offset + done
                case let d where d.block != nil:
                    storeError.merge(try BlockConversion.quantizeStep(values, to: d, into: scratch.out + held.count, readBack: scratch.back))
                    bytes = UnsafeRawBufferPointer(start: scratch.out + held.count, count: d.storedBytes(count))
                    at = offset + d.storedBytes(done)
                default:
                    throw CheckpointError.inconsistent("cannot store \(t.name) as \(target)")
                }
                storedHasher?.update(bytes)
                if target == .f32 {
                    try writer.write(bytes, at: at)
                    behind.add(at..<(at + bytes.count))
                } else {
                    if held.count == 0 { held.at = at }
                    held.count += bytes.count
                    if held.count + stepOut > scratch.outBytes || done + count == n { try writeHeld() }
                }
            } else if passThrough {
                let first = offset + target.storedBytes(done)
                behind.add(first..<(first + readBytes))
            }
            // Mapped source pages the step read are done with (they stay in the page cache).
            for r in mapped { MappedFile.releasePages(of: r) }
            if let slot = lent?.slot {
                feed?.publish(slot, count: readBytes)
                lent = nil
            }
            progress?.advance(readBytes)
            done += count
        }
        behind.flush()
        try container.checkUnchanged()

        if nonFinite > 0 {
            pthread_mutex_lock(&mutex)
            nonFiniteList.append((i, t.name, nonFinite))
            pthread_mutex_unlock(&mutex)
            if refused { return }
        }
        if trackRows { storeError.rows = rowFigures }
        var error: ConversionError?
        switch target {
        case .f32:
            if lossyWiden { error = widenError.figures }
        case .f16, .bf16:
            if sourceDType != target || lossyWiden {
                // From an F64 source the error has two stages: rounding to float32, then narrowing
                // (the row figures are the narrowing's).
                var total = storeError
                if lossyWiden { total = widenError; total.merge(storeError); total.rows = storeError.rows }
                error = total.figures
                if overflow > 0 { recordOverflow(i, t.name, overflow) }
            }
        default:
            if !passThrough {
                error = storeError.figures
                // A block scale is float16: values past its range give infinite scales.
                if target.block != nil && storeError.overflow > 0 { recordOverflow(i, t.name, storeError.overflow) }
            }
        }
        var scaleRecord: StoredRecord?
        if let scales, let so = scaleOffset {
            let bytes = UnsafeRawBufferPointer(start: scales.pointer, count: rows * 4)
            try writer.write(bytes, at: so)
            scaleRecord = StoredRecord(dtype: .f32, shape: [rows], offset: so, bytes: rows * 4, checksum: XXH3Hasher.hex(bytes))
        } else if target == .i8 {
            throw CheckpointError.inconsistent("no scale offset for \(t.name)")
        }
        let sourceRecords = pending.map { p -> SourceTensorRecord in
            let digest: String
            switch p.digest {
            case .segment(let k): digest = segments[k].hasher?.finalizeHex() ?? ""
            case .value(let v): digest = v
            }
            return SourceTensorRecord(name: p.name, dtype: p.dtype, shape: p.shape, checksum: digest)
        }
        let storedDigest = storedHasher?.finalizeHex() ?? sourceRecords[0].checksum
        let record = BundleTensor(name: t.name,
                                  stored: StoredRecord(dtype: target, shape: t.shape, offset: offset, bytes: try target.byteCount(shape: t.shape), checksum: storedDigest),
                                  sources: sourceRecords, transform: transform, error: error, scale: scaleRecord, nonFinite: nonFinite)
        withExtendedLifetime(segments) {}
        pthread_mutex_lock(&mutex)
        results[i] = record
        pthread_mutex_unlock(&mutex)
    }

    private func recordOverflow(_ i: Int, _ name: String, _ count: Int) {
        pthread_mutex_lock(&mutex)
        overflowList.append((i, name, count))
        pthread_mutex_unlock(&mutex)
    }
}

extension DType {
    /// Bytes of `elements` values stored in this type (a whole number of blocks for a block type).
    func storedBytes(_ elements: Int) -> Int {
        if let b = block { return elements / b.elements * b.bytes }
        return elements * itemSize
    }
}

// The manifest of a DiTKit bundle (FORMAT.md). The format layer types what it needs to find
// and check bytes; model configuration, provenance and policy stay JSON for higher layers.
import DiTKitCore

/// Why a bundle was refused.
public enum BundleError: Error, CustomStringConvertible, Sendable {
    case notABundle(String)
    case manifest(String)
    case layout(String)
    case unsupportedVersion(Int)

    public var description: String {
        switch self {
        case .notABundle(let s): return "not a DiTKit bundle: \(s)"
        case .manifest(let s): return "invalid manifest: \(s)"
        case .layout(let s): return "invalid bundle layout: \(s)"
        case .unsupportedVersion(let v):
            return "bundle format version \(v) is not supported (this DiTKit reads versions \(BundleManifest.readableVersions.lowerBound) to \(BundleManifest.readableVersions.upperBound))"
        }
    }
}

/// Where a stored record lives and what its bytes hash to.
public struct StoredRecord: Sendable, Equatable {
    public var dtype: DType
    public var shape: [Int]
    public var offset: Int
    public var bytes: Int
    /// Hex digest of the stored bytes, in the manifest's `checksum` algorithm.
    public var checksum: String

    public init(dtype: DType, shape: [Int], offset: Int, bytes: Int, checksum: String) {
        self.dtype = dtype
        self.shape = shape
        self.offset = offset
        self.bytes = bytes
        self.checksum = checksum
    }
}

/// The worst row of a lossy tensor of rank 2 or more (rows = first dimension), by SQNR.
public struct WorstRow: Sendable, Equatable {
    public var row: Int
    public var sqnrDB: Double
    public init(row: Int, sqnrDB: Double) {
        self.row = row
        self.sqnrDB = sqnrDB
    }
}

/// Rows that lost most of their values: more than half of the row's values were non-zero in the
/// source and are stored as 0 (an int8 row whose scale an outlier sets; an F16 row below its
/// smallest subnormal). The whole tensor's SQNR does not show them: the values that set the scale
/// carry nearly all the energy.
public struct RuinedRows: Sendable, Equatable {
    /// How many rows are ruined.
    public var count: Int
    /// The ruined row with the largest share of values stored as 0, that share, and the row length.
    public var row: Int
    public var flushedToZero: Int
    public var values: Int
    public init(count: Int, row: Int, flushedToZero: Int, values: Int) {
        self.count = count
        self.row = row
        self.flushedToZero = flushedToZero
        self.values = values
    }
}

/// Per-tensor error figures of a lossy conversion.
public struct ConversionError: Sendable, Equatable {
    public var maxAbs: Double
    public var relL2: Double
    /// `nil` when the stored values are exact.
    public var sqnrDB: Double?
    public var overflow: Int
    public var flushedToZero: Int
    /// For tensors of rank 2 or more with an inexact row: the row with the lowest SQNR.
    public var worstRow: WorstRow?
    /// Rows that lost most of their values, when there are any.
    public var ruinedRows: RuinedRows?

    public init(maxAbs: Double, relL2: Double, sqnrDB: Double?, overflow: Int, flushedToZero: Int,
                worstRow: WorstRow? = nil, ruinedRows: RuinedRows? = nil) {
        self.maxAbs = maxAbs
        self.relL2 = relL2
        self.sqnrDB = sqnrDB
        self.overflow = overflow
        self.flushedToZero = flushedToZero
        self.worstRow = worstRow
        self.ruinedRows = ruinedRows
    }

    /// The figures as the manifest records them (FORMAT.md, `tensors[i].error`).
    public var json: JSONValue {
        var m: [(String, JSONValue)] = [("max_abs", .double(maxAbs)), ("rel_l2", .double(relL2))]
        if let s = sqnrDB { m.append(("sqnr_db", .double(s))) }
        m += [("overflow", .int(overflow)), ("flushed_to_zero", .int(flushedToZero))]
        if let w = worstRow { m.append(("worst_row", .object([("row", .int(w.row)), ("sqnr_db", .double(w.sqnrDB))]))) }
        if let r = ruinedRows {
            m.append(("ruined_rows", .object([("count", .int(r.count)), ("row", .int(r.row)),
                                              ("flushed_to_zero", .int(r.flushedToZero)), ("values", .int(r.values))])))
        }
        return .object(m)
    }

    init(json: JSONValue) throws {
        guard let m = json["max_abs"]?.doubleValue, let r = json["rel_l2"]?.doubleValue,
              let o = json["overflow"]?.intValue, let f = json["flushed_to_zero"]?.intValue else {
            throw BundleError.manifest("error figures need max_abs, rel_l2, overflow, flushed_to_zero")
        }
        var worst: WorstRow?
        if let w = json["worst_row"] {
            guard let row = w["row"]?.intValue, row >= 0, let db = w["sqnr_db"]?.doubleValue else {
                throw BundleError.manifest("error figure worst_row needs row and sqnr_db")
            }
            worst = WorstRow(row: row, sqnrDB: db)
        }
        var ruined: RuinedRows?
        if let x = json["ruined_rows"] {
            guard let c = x["count"]?.intValue, c > 0, let row = x["row"]?.intValue, row >= 0,
                  let fz = x["flushed_to_zero"]?.intValue, fz >= 0, let n = x["values"]?.intValue, n >= fz else {
                throw BundleError.manifest("error figure ruined_rows needs count, row, flushed_to_zero and values")
            }
            ruined = RuinedRows(count: c, row: row, flushedToZero: fz, values: n)
        }
        self.init(maxAbs: m, relL2: r, sqnrDB: json["sqnr_db"]?.doubleValue, overflow: o, flushedToZero: f, worstRow: worst, ruinedRows: ruined)
    }
}

/// A source tensor a stored tensor was made from.
public struct SourceTensorRecord: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    /// Hex digest of the source tensor's C-contiguous little-endian bytes, in the manifest's
    /// `checksum` algorithm (what `ditkit inspect --hash` prints for the source).
    public var checksum: String
    public init(name: String, dtype: DType, shape: [Int], checksum: String) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.checksum = checksum
    }
}

/// One tensor of the manifest.
public struct BundleTensor: Sendable, Equatable {
    public var name: String
    public var stored: StoredRecord
    public var sources: [SourceTensorRecord]
    /// `copy`, `reshape`, `concat-rows`, `fold-identical`, `computed-2d-sincos`.
    public var transform: String
    public var error: ConversionError?
    /// For I8 tensors: the float32 per-row scales.
    public var scale: StoredRecord?
    /// NaN and infinite values in the source (kept with `--allow-nonfinite`; 0 normally). Error
    /// figures leave them out.
    public var nonFinite: Int

    public init(name: String, stored: StoredRecord, sources: [SourceTensorRecord], transform: String, error: ConversionError? = nil,
                scale: StoredRecord? = nil, nonFinite: Int = 0) {
        self.name = name
        self.stored = stored
        self.sources = sources
        self.transform = transform
        self.error = error
        self.scale = scale
        self.nonFinite = nonFinite
    }
}

/// The whole manifest.
public struct BundleManifest: Sendable {
    public static let formatName = "ditkit"
    /// The newest format version this DiTKit reads and writes.
    public static let formatVersion = 3
    /// Versions this DiTKit reads: 1 (F32, F16, BF16, I8 and the other element types, SHA-256 of
    /// every tensor), 2 (version 1 plus the ggml block types) and 3 (version 2 with an XXH3-128 of
    /// every tensor instead of its SHA-256). DiTKit writes version 3; versions 1 and 2 are read and
    /// checked with their SHA-256s.
    public static let readableVersions = 1...3
    public static let defaultAlignment = 16384
    public static let manifestFile = "manifest.json"
    public static let checksumFile = "manifest.json.sha256"
    public static let weightsFile = "weights.bin"

    public var alignment: Int
    public var family: String
    public var variant: String
    public var config: JSONValue
    public var naming: String
    public var provenance: JSONValue
    public var converterName = "ditkit"
    public var converterVersion = DiTKitVersion.string
    public var dtypePolicy: JSONValue
    public var weightsBytes: Int
    public var tensors: [BundleTensor]
    /// The algorithm of every tensor's checksum (stored, scale and source records): XXH3-128 from
    /// format version 3 on, SHA-256 in versions 1 and 2.
    public var checksum: ChecksumAlgorithm

    public init(alignment: Int, family: String, variant: String, config: JSONValue, naming: String, provenance: JSONValue,
                dtypePolicy: JSONValue, weightsBytes: Int, tensors: [BundleTensor], checksum: ChecksumAlgorithm = .xxh3_128) {
        self.checksum = checksum
        self.alignment = alignment
        self.family = family
        self.variant = variant
        self.config = config
        self.naming = naming
        self.provenance = provenance
        self.dtypePolicy = dtypePolicy
        self.weightsBytes = weightsBytes
        self.tensors = tensors
    }

    /// The format version this manifest is written with: 3 with XXH3-128 checksums; with SHA-256
    /// (a manifest read from an older bundle), 2 when a tensor is stored in, or was made from a
    /// source in, a ggml block type (a version-1 reader knows neither), else 1.
    public var formatVersion: Int {
        if checksum == .xxh3_128 { return 3 }
        return tensors.contains(where: BundleManifest.namesBlockType) ? 2 : 1
    }

    static func namesBlockType(_ t: BundleTensor) -> Bool {
        t.stored.dtype.block != nil || t.sources.contains { $0.dtype.block != nil }
    }

    /// The manifest as JSON, members in FORMAT.md order.
    public var json: JSONValue {
        func record(_ r: StoredRecord) -> [(String, JSONValue)] {
            [("dtype", .string(r.dtype.name)), ("shape", .array(r.shape.map { .int($0) })), ("offset", .int(r.offset)),
             ("bytes", .int(r.bytes)), (checksum.rawValue, .string(r.checksum))]
        }
        let tensorValues: [JSONValue] = tensors.map { t in
            var m: [(String, JSONValue)] = [("name", .string(t.name))] + record(t.stored)
            m.append(("source", .object([
                ("tensors", .array(t.sources.map { s in
                    .object([("name", .string(s.name)), ("dtype", .string(s.dtype.name)), ("shape", .array(s.shape.map { .int($0) })), (checksum.rawValue, .string(s.checksum))])
                })),
                ("transform", .string(t.transform)),
            ])))
            if t.nonFinite > 0 { m.append(("nonfinite", .int(t.nonFinite))) }
            if let e = t.error { m.append(("error", e.json)) }
            if let s = t.scale {
                m.append(("quantization", .object([
                    ("scheme", .string("symmetric-per-output-channel")), ("axis", .int(0)), ("scale", .object(record(s))),
                ])))
            }
            return .object(m)
        }
        return .object([
            ("format", .string(BundleManifest.formatName)),
            ("format_version", .int(formatVersion)),
            ("alignment", .int(alignment)),
            ("model", .object([("family", .string(family)), ("variant", .string(variant)), ("config", config)])),
            ("naming", .string(naming)),
            ("provenance", provenance),
            ("converter", .object([("name", .string(converterName)), ("version", .string(converterVersion))])),
            ("dtype_policy", dtypePolicy),
            ("weights", .object([("file", .string(BundleManifest.weightsFile)), ("bytes", .int(weightsBytes))])),
            ("tensors", .array(tensorValues)),
        ])
    }

    /// Parses and validates a manifest. Throws `BundleError`.
    public init(json: JSONValue) throws {
        guard json["format"]?.stringValue == BundleManifest.formatName else { throw BundleError.manifest("'format' is not \"ditkit\"") }
        guard let v = json["format_version"]?.intValue else { throw BundleError.manifest("missing format_version") }
        guard BundleManifest.readableVersions.contains(v) else { throw BundleError.unsupportedVersion(v) }
        let algorithm: ChecksumAlgorithm = v >= 3 ? .xxh3_128 : .sha256
        checksum = algorithm
        guard let a = json["alignment"]?.intValue, a >= 64, a <= 1 << 30, a & (a - 1) == 0 else {
            throw BundleError.manifest("alignment must be a power of two between 64 and 2^30")
        }
        alignment = a
        guard let model = json["model"], let f = model["family"]?.stringValue, let vr = model["variant"]?.stringValue, let cfg = model["config"] else {
            throw BundleError.manifest("model needs family, variant and config")
        }
        family = f
        variant = vr
        config = cfg
        guard let n = json["naming"]?.stringValue else { throw BundleError.manifest("missing naming") }
        naming = n
        provenance = json["provenance"] ?? .object([])
        if let c = json["converter"] {
            converterName = c["name"]?.stringValue ?? ""
            converterVersion = c["version"]?.stringValue ?? ""
        }
        dtypePolicy = json["dtype_policy"] ?? .object([])
        guard json["weights"]?["file"]?.stringValue == BundleManifest.weightsFile, let wb = json["weights"]?["bytes"]?.intValue, wb >= 0 else {
            throw BundleError.manifest("weights must be {\"file\": \"weights.bin\", \"bytes\": N}")
        }
        weightsBytes = wb
        guard let items = json["tensors"]?.arrayValue else { throw BundleError.manifest("missing tensors") }

        func record(_ j: JSONValue, _ what: String) throws -> StoredRecord {
            guard let ds = j["dtype"]?.stringValue, let d = DType(rawValue: ds) else { throw BundleError.manifest("\(what): unknown dtype") }
            guard let sh = j["shape"]?.arrayValue?.map({ $0.intValue ?? -1 }), sh.allSatisfy({ $0 >= 0 }) else { throw BundleError.manifest("\(what): bad shape") }
            guard let o = j["offset"]?.intValue, let b = j["bytes"]?.intValue, o >= 0, b >= 0 else { throw BundleError.manifest("\(what): bad offset or bytes") }
            guard let h = j[algorithm.rawValue]?.stringValue, h.utf8.count == algorithm.hexDigits else {
                throw BundleError.manifest("\(what): no \(algorithm.rawValue) of \(algorithm.hexDigits) hex digits (format_version \(v))")
            }
            return StoredRecord(dtype: d, shape: sh, offset: o, bytes: b, checksum: h)
        }
        var names = Set<String>()
        tensors = try items.map { item in
            guard let name = item["name"]?.stringValue else { throw BundleError.manifest("a tensor has no name") }
            guard names.insert(name).inserted else { throw BundleError.manifest("duplicate tensor '\(name)'") }
            let stored = try record(item, "tensor '\(name)'")
            var sources: [SourceTensorRecord] = []
            for s in item["source"]?["tensors"]?.arrayValue ?? [] {
                guard let sn = s["name"]?.stringValue, let sd = s["dtype"]?.stringValue.flatMap(DType.init(rawValue:)),
                      let ss = s["shape"]?.arrayValue?.compactMap(\.intValue), let sh = s[algorithm.rawValue]?.stringValue else {
                    throw BundleError.manifest("tensor '\(name)': bad source entry (it needs name, dtype, shape and \(algorithm.rawValue))")
                }
                sources.append(SourceTensorRecord(name: sn, dtype: sd, shape: ss, checksum: sh))
            }
            let error = try item["error"].map { try ConversionError(json: $0) }
            var scale: StoredRecord?
            if let q = item["quantization"] {
                guard let s = q["scale"] else { throw BundleError.manifest("tensor '\(name)': quantization without scale") }
                scale = try record(s, "scale of '\(name)'")
            }
            let nonFinite = item["nonfinite"]?.intValue ?? 0
            guard nonFinite >= 0 else { throw BundleError.manifest("tensor '\(name)': negative nonfinite count") }
            return BundleTensor(name: name, stored: stored, sources: sources, transform: item["source"]?["transform"]?.stringValue ?? "copy",
                                error: error, scale: scale, nonFinite: nonFinite)
        }
        if v < 2, let t = tensors.first(where: BundleManifest.namesBlockType) {
            let d = t.stored.dtype.block != nil ? t.stored.dtype : (t.sources.first { $0.dtype.block != nil }?.dtype ?? t.stored.dtype)
            throw BundleError.manifest("tensor '\(t.name)' is\(d == t.stored.dtype ? "" : " made from") \(d.name), which needs format_version 2 (the manifest says \(v))")
        }
    }

    /// Checks sizes, alignment, bounds and overlaps of every record. Throws `BundleError.layout`.
    public func validateLayout(fileSize: Int) throws {
        guard fileSize == weightsBytes else {
            throw BundleError.layout("\(BundleManifest.weightsFile) has \(fileSize) bytes, the manifest says \(weightsBytes)")
        }
        var ranges: [(Range<Int>, String)] = []
        for t in tensors {
            var records = [(t.stored, t.name)]
            if let s = t.scale {
                guard t.stored.dtype == .i8, s.dtype == .f32, s.shape == [t.stored.shape.first ?? 1] else {
                    throw BundleError.layout("tensor '\(t.name)': a scale must be F32 [rows] of an I8 tensor")
                }
                records.append((s, t.name + ".scale"))
            } else if t.stored.dtype == .i8 {
                throw BundleError.layout("I8 tensor '\(t.name)' has no scale")
            }
            for (r, name) in records {
                let b: Int
                do { b = try r.dtype.byteCount(shape: r.shape) } catch let e as BlockQuantizationError {
                    throw BundleError.layout("'\(name)': \(e)")
                } catch { throw ArithmeticOverflow("the size of \(name)") }
                guard b == r.bytes else { throw BundleError.layout("'\(name)': \(r.bytes) bytes recorded, shape and dtype need \(b)") }
                guard r.offset % alignment == 0 else { throw BundleError.layout("'\(name)': offset \(r.offset) is not a multiple of \(alignment)") }
                let end = try Checked.add(r.offset, r.bytes, "the end of \(name)")
                guard end <= fileSize else { throw BundleError.layout("'\(name)' ends at byte \(end), past the end of the \(fileSize)-byte weights file") }
                ranges.append((r.offset..<end, name))
            }
        }
        ranges.sort { $0.0.lowerBound < $1.0.lowerBound }
        for k in ranges.indices.dropFirst() where ranges[k].0.lowerBound < ranges[k - 1].0.upperBound {
            throw BundleError.layout("'\(ranges[k - 1].1)' and '\(ranges[k].1)' overlap")
        }
    }
}

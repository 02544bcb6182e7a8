// What `ditkit show BUNDLE` prints: a bundle's manifest for people — the model, where it came
// from (provenance), how it was stored (dtype policy), and the error figures of every lossy tensor.
import DiTKitCore

/// A summary of a bundle's manifest.
public struct BundleSummary: Sendable {
    public let path: String
    public let manifest: BundleManifest

    public init(_ bundle: NativeBundle) {
        path = bundle.path
        manifest = bundle.manifest
    }

    /// The model's parameters (stored values; an I8 tensor's scales are not parameters).
    public var parameters: Int { manifest.tensors.reduce(0) { $0 + $1.stored.shape.reduce(1, *) } }

    /// Lossy tensors in manifest order.
    public var lossy: [BundleTensor] { manifest.tensors.filter { $0.error != nil } }

    /// `ditkit show --json`: `path`, `format_version`, `model` (`family`, `variant`, `config`),
    /// `naming`, `tensors`, `stored_types`, `parameters`, `bytes`, `provenance`, `converter`,
    /// `dtype_policy` (as the manifest has them), `lossy` (`name`, `dtype`, `error`) and
    /// `nonfinite` (`name`, `count`).
    public var json: JSONValue {
        .object([
            ("path", .string(path)), ("format_version", .int(manifest.formatVersion)),
            ("model", .object([("family", .string(manifest.family)), ("variant", .string(manifest.variant)), ("config", manifest.config)])),
            ("naming", .string(manifest.naming)), ("tensors", .int(manifest.tensors.count)),
            ("stored_types", .object(storedTypes.map { ($0.0.name, .int($0.1)) })),
            ("parameters", .int(parameters)), ("bytes", .int(manifest.weightsBytes)),
            ("provenance", manifest.provenance),
            ("converter", .object([("name", .string(manifest.converterName)), ("version", .string(manifest.converterVersion))])),
            ("dtype_policy", manifest.dtypePolicy),
            ("lossy", .array(lossy.map { t in
                .object([("name", .string(t.name)), ("dtype", .string(t.stored.dtype.name)), ("error", t.error?.json ?? .null)])
            })),
            ("nonfinite", .array(manifest.tensors.filter { $0.nonFinite > 0 }.map { .object([("name", .string($0.name)), ("count", .int($0.nonFinite))]) })),
        ])
    }

    /// Stored dtype -> tensor count, by dtype name.
    var storedTypes: [(DType, Int)] {
        var counts: [DType: Int] = [:]
        for t in manifest.tensors { counts[t.stored.dtype, default: 0] += 1 }
        return counts.sorted { $0.key.name < $1.key.name }.map { ($0.key, $0.value) }
    }

    /// The summary as text; `modelLine` is the family's one-line description of the configuration
    /// (`depth 28, hidden 1152, …`), which this module cannot compute. Every string from the
    /// manifest is escaped.
    public func text(modelLine: String? = nil) -> String {
        func e(_ s: String) -> String { TerminalText.escaped(s) }
        func value(_ v: JSONValue?) -> String {
            switch v {
            case .string(let s)?: return e(s)
            case nil, .null?: return "-"
            case let v?: return e(JSONWriter.string(v, pretty: false))
            }
        }
        var out = "\(e(path)): DiTKit bundle, format \(manifest.formatVersion), \(e(manifest.variant)) (\(e(manifest.family))), \(e(manifest.naming)) naming\n"
        if let m = modelLine, !m.isEmpty { out += "  model: \(e(m))\n" }
        let types = storedTypes.map { "\($0.1) \($0.0.name)" }.joined(separator: ", ")
        let scaled = manifest.tensors.filter { $0.scale != nil }.count
        out += "  tensors: \(manifest.tensors.count) (\(types)\(scaled > 0 ? "; the I8 ones with per-row F32 scales" : "")), parameters: \(grouped(parameters)), weights: \(NumberFormat.bytes(manifest.weightsBytes))\n"

        let p = manifest.dtypePolicy
        out += "  dtype policy: \(value(p["dtype"]))"
        if let f = p["float_dtype"] { out += ", float tensors \(value(f))" }
        if let r = p["rounding"] { out += ", rounding \(value(r))" }
        out += "\n"
        if let q = p["int8"] {
            out += "    int8: \(value(q["scheme"])), axis \(value(q["axis"])), \(value(q["scale_dtype"])) scales, rounding \(value(q["rounding"]))\n"
            if let what = q["quantized"] { out += "    quantized: \(value(what))\n" }
        }
        let keep = p["keep"]?.arrayValue?.compactMap(\.stringValue) ?? []
        out += "    kept in float32 by --keep: \(keep.isEmpty ? "none" : keep.map { "'\(e($0))'" }.joined(separator: ", "))\n"
        for (k, v) in p.objectValue ?? [] where !["dtype", "float_dtype", "rounding", "int8", "keep"].contains(k) {
            out += "    \(e(k)): \(value(v))\n"
        }

        let prov = manifest.provenance
        out += "  provenance:\n"
        if let s = prov["source"] {
            out += "    source: \(value(s["file"]))" + (s["bytes"]?.intValue.map { ", \(grouped($0)) bytes" } ?? "") + "\n"
            if let sha = s["sha256"] { out += "    sha256: \(value(sha))\n" }
            out += "    container: \(value(s["container"])), naming: \(value(s["naming"]))"
            let subtree = s["subtree"]?.stringValue ?? ""
            out += (subtree.isEmpty ? "" : ", subtree \(TerminalText.quoted(subtree))") + "\n"
        }
        for (k, v) in prov.objectValue ?? [] where k != "source" {
            if case .object(let members) = v {
                for (mk, mv) in members { out += "    \(e(k)) \(e(mk)): \(value(mv))\n" }
            } else {
                out += "    \(e(k)): \(value(v))\n"
            }
        }
        out += "  converter: \(e(manifest.converterName)) \(e(manifest.converterVersion))\n"

        let nonFinite = manifest.tensors.filter { $0.nonFinite > 0 }
        if !nonFinite.isEmpty {
            out += "  NaN or infinite source values kept: " + nonFinite.map { "\(e($0.name)) (\($0.nonFinite))" }.joined(separator: ", ") + "\n"
        }

        let lossy = self.lossy
        guard !lossy.isEmpty else {
            out += "  lossy tensors: none (every stored value equals its source value)\n"
            return out
        }
        let ruined = lossy.filter { $0.error?.ruinedRows != nil }
        out += "  lossy tensors: \(lossy.count)" + (ruined.isEmpty ? "" : "; \(ruined.count) with rows that lost most of their values (marked !)") + "\n\n"
        func db(_ v: Double?) -> String { v.map { NumberFormat.fixed($0, 1) } ?? "exact" }
        let rows = lossy.map { t -> [String] in
            let x = t.error!
            let worst = x.worstRow.map { "\(db($0.sqnrDB)) (row \($0.row))" } ?? "-"
            let lost = x.ruinedRows.map { "! \($0.count) (row \($0.row): \(grouped($0.flushedToZero))/\(grouped($0.values)))" } ?? "-"
            return [t.name, t.stored.dtype.name, db(x.sqnrDB), worst, NumberFormat.scientific(x.relL2), NumberFormat.scientific(x.maxAbs),
                    grouped(x.overflow), grouped(x.flushedToZero), lost]
        }
        out += renderTable(header: ["name", "dtype", "SQNR dB", "worst row dB", "rel L2", "max abs", "overflow", "flushed", "rows lost"],
                           rows: rows, rightAligned: [2, 3, 4, 5, 6, 7])
        return out
    }
}

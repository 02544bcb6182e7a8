// `verify A.ditkit B.ditkit … --against SOURCE --report FILE.html`: the size / fidelity trade-off
// of several conversions of one model, as one self-contained page: model size against output SQNR
// for every bundle (one point per uniform type, marked points for `auto`), then a table. Inline SVG,
// no scripts, well-formed XML, like the single-model report (HTMLReport.swift).
import DiTKitCore
import DiTKitFormats
import DiTKitModels

/// One converted model on the trade-off chart.
public struct TradeOffPoint: Sendable, Equatable {
    /// `q4_k`, `f16`, `auto 30 dB`, …
    public var label: String
    public var path: String
    /// Bytes of `weights.bin`.
    public var bytes: Int
    /// The lowest SQNR of the family's pass outputs against the source (dB; infinite when exact).
    public var outputSQNR: Double
    /// The lowest SQNR of any layer (dB).
    public var worstLayerSQNR: Double
    public var passed: Bool
    /// Chosen per tensor by a fidelity budget (`--dtype auto`).
    public var isAuto: Bool

    /// The point of a verified bundle.
    public init(path: String, bundle: NativeBundle, result: VerificationResult) throws {
        let c = try ModelConfiguration(family: bundle.manifest.family, json: bundle.manifest.config)
        let outputs = Set(c.family.passes(c).map(\.name))
        let dtype = bundle.manifest.dtypePolicy["dtype"]?.stringValue ?? "f32"
        isAuto = dtype == "auto"
        if isAuto, let db = bundle.manifest.dtypePolicy["auto"]?["min_sqnr_db"]?.doubleValue {
            label = "auto \(db == db.rounded() && abs(db) < 1e6 ? String(Int(db)) : NumberFormat.fixed(db, 1)) dB"
        } else {
            label = dtype
        }
        self.path = path
        bytes = bundle.manifest.weightsBytes
        outputSQNR = result.layers.filter { outputs.contains($0.name) }.map(\.sqnrDB).min() ?? .infinity
        worstLayerSQNR = result.layers.map(\.sqnrDB).min() ?? .infinity
        passed = result.passed
    }
}

extension HTMLReport {
    /// The trade-off page of `points` (any order; drawn by size).
    public static func renderTradeOff(_ points: [TradeOffPoint], title: String, against: String) -> String {
        let sorted = points.sorted { ($0.bytes, $0.label) < ($1.bytes, $1.label) }
        var h = "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\(generatorTag)\n"
        h += "<title>\(escape(title))</title>\n<style>\n"
        h += "body { font: 14px/1.45 -apple-system, \"Segoe UI\", Helvetica, Arial, sans-serif; color: #1b1b1b; max-width: 1000px; margin: 24px auto; padding: 0 16px; }\n"
        h += "table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #eee; text-align: right; } td.l, th.l { text-align: left; }\n"
        h += "</style>\n</head>\n<body>\n"
        h += "<h1>\(escape(title))</h1>\n<p>Each converted model against <code>\(escape(against))</code> on the same deterministic inputs: "
        h += "the size of its weights against the SQNR of its output (the lowest over the model's passes). Higher and further left is better.</p>\n"
        h += "<section id=\"trade-off\">\n" + tradeOffChart(sorted) + "\n</section>\n"
        h += "<section id=\"trade-off-table\"><table>\n<tr><th class=\"l\">model</th><th class=\"l\">storage</th><th>weights (bytes)</th><th>output SQNR (dB)</th><th>worst layer SQNR (dB)</th><th class=\"l\">verify</th></tr>\n"
        for p in sorted {
            h += "<tr class=\"point\"><td class=\"l\">\(escape(FileSystem.baseName(p.path)))</td><td class=\"l\">\(escape(p.label))</td><td>\(p.bytes)</td>"
            h += "<td>\(num(p.outputSQNR, 3))</td><td>\(num(p.worstLayerSQNR, 3))</td><td class=\"l\">\(p.passed ? "passed" : "FAILED")</td></tr>\n"
        }
        h += "</table></section>\n</body>\n</html>\n"
        return h
    }

    /// Size (x, logarithmic, MB) against output SQNR (y, dB, exact outputs drawn at the top).
    static func tradeOffChart(_ points: [TradeOffPoint]) -> String {
        let left = 70, top = 20, width = 640, height = 360
        let mb = points.map { max(Double($0.bytes) / 1e6, 1e-6) }
        let finite = points.map(\.outputSQNR).filter(\.isFinite)
        let lo = ((finite.min() ?? 0) / 10).rounded(.down) * 10, hi = max(((finite.max() ?? 10) / 10).rounded(.up) * 10 + 10, lo + 10)
        let xlo = log10(mb.min() ?? 1) - 0.05, xhi = max(log10(mb.max() ?? 1) + 0.05, xlo + 0.1)
        func x(_ v: Double) -> Int { left + Int((log10(v) - xlo) / (xhi - xlo) * Double(width)) }
        func y(_ db: Double) -> Int { top + Int((1 - ((db.isFinite ? db : hi) - lo) / (hi - lo)) * Double(height)) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(left + width + 140)\" height=\"\(top + height + 50)\" role=\"img\" aria-label=\"size against output SQNR\">\n"
        for db in stride(from: lo, through: hi, by: 10) {
            s += "<line x1=\"\(left)\" y1=\"\(y(db))\" x2=\"\(left + width)\" y2=\"\(y(db))\" stroke=\"#e4e4e4\"/>"
            s += "<text x=\"\(left - 6)\" y=\"\(y(db) + 4)\" font-size=\"10\" text-anchor=\"end\">\(Int(db))</text>\n"
        }
        s += "<text x=\"14\" y=\"\(top + height / 2)\" font-size=\"11\" transform=\"rotate(-90 14 \(top + height / 2))\" text-anchor=\"middle\">output SQNR (dB)</text>\n"
        s += "<text x=\"\(left + width / 2)\" y=\"\(top + height + 40)\" font-size=\"11\" text-anchor=\"middle\">weights (MB, logarithmic)</text>\n"
        for v in mb {
            s += "<text x=\"\(x(v))\" y=\"\(top + height + 16)\" font-size=\"9\" text-anchor=\"middle\">\(num(v, 3))</text>\n"
        }
        // The uniform types, joined by size; auto choices stand alone.
        let uniform = zip(points, mb).filter { !$0.0.isAuto }
        if uniform.count > 1 {
            s += "<polyline fill=\"none\" stroke=\"#9bbbe8\" points=\"" + uniform.map { "\(x($0.1)),\(y($0.0.outputSQNR))" }.joined(separator: " ") + "\"/>\n"
        }
        for (p, v) in zip(points, mb) {
            let color = p.passed ? (p.isAuto ? "#d87f1b" : "#3b7dd8") : "#d83b3b"
            let mark = p.isAuto
                ? "<rect class=\"dot\" x=\"\(x(v) - 5)\" y=\"\(y(p.outputSQNR) - 5)\" width=\"10\" height=\"10\" fill=\"\(color)\">"
                : "<circle class=\"dot\" cx=\"\(x(v))\" cy=\"\(y(p.outputSQNR))\" r=\"5\" fill=\"\(color)\">"
            s += mark + "<title>\(escape(p.label)): \(p.bytes) bytes, output SQNR \(num(p.outputSQNR, 3)) dB</title>" + (p.isAuto ? "</rect>" : "</circle>")
            s += "<text x=\"\(x(v) + 8)\" y=\"\(y(p.outputSQNR) + 4)\" font-size=\"10\">\(escape(p.label))</text>\n"
        }
        s += "</svg>"
        return s
    }
}

#if canImport(Glibc)
import Glibc
#endif

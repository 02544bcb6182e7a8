// The readable verification table.
import DiTKitCore

extension VerificationResult {
    /// A table of every compared layer and the final verdict line.
    public var text: String {
        func sci(_ v: Double) -> String {
            guard v.isFinite else { return v.isNaN ? "nan" : "inf" }
            if v == 0 { return "0" }
            var e = Int(log10(abs(v)).rounded(.down))
            var m = v / pow10(e)
            if abs(m) >= 9.995 { m /= 10; e += 1 }
            let mant = String(format2: m)
            return mant + "e" + (e < 0 ? "-" : "+") + (abs(e) < 10 ? "0" : "") + String(abs(e))
        }
        var out = "\(model): \(layers.count) layers compared, profile \(profile.name) (rel L2 <= \(sci(profile.maxRelL2)))\n\n"
        let header = ["layer", "max_abs", "mean_abs", "rel_l2", "cosine", "sqnr_db", "threshold", "result"]
        var rows: [[String]] = []
        for l in layers {
            rows.append([l.name, sci(l.maxAbs), sci(l.meanAbs), sci(l.relL2), String(format6: l.cosine),
                         l.sqnrDB.isFinite ? String(format1: l.sqnrDB) : "inf", sci(l.threshold),
                         l.passed ? "ok" : (l.nonFinite > 0 ? "FAIL (\(l.nonFinite) non-finite)" : "FAIL")])
        }
        out += tableText(header: header, rows: rows, right: [1, 2, 3, 4, 5, 6])
        if !skipped.isEmpty { out += "\nskipped (not produced by DiTKit): " + skipped.joined(separator: ", ") + "\n" }
        out += "\n" + (passed ? "PASSED" : "FAILED: first failing layer \(firstFailingLayer ?? "(none compared)")") + "\n"
        return out
    }
}

private func pow10(_ e: Int) -> Double {
    var r = 1.0
    if e >= 0 { for _ in 0..<e { r *= 10 } } else { for _ in 0..<(-e) { r /= 10 } }
    return r
}

private func fixedText(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return v.isNaN ? "nan" : "inf" }
    var p = 1.0
    for _ in 0..<digits { p *= 10 }
    let r = (abs(v) * p).rounded()
    let whole = Int(r / p)
    var frac = String(Int(r.truncatingRemainder(dividingBy: p)))
    while frac.count < digits { frac = "0" + frac }
    return (v < 0 && r != 0 ? "-" : "") + String(whole) + (digits > 0 ? "." + frac : "")
}

extension String {
    init(format1 v: Double) { self = fixedText(v, 1) }
    init(format2 v: Double) { self = fixedText(v, 2) }
    init(format6 v: Double) { self = fixedText(v, 6) }
}

private func tableText(header: [String], rows: [[String]], right: Set<Int>) -> String {
    var widths = header.map(\.count)
    for r in rows { for (k, c) in r.enumerated() { widths[k] = max(widths[k], c.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { k, c in
            right.contains(k) ? String(repeating: " ", count: widths[k] - c.count) + c : c + String(repeating: " ", count: widths[k] - c.count)
        }.joined(separator: "  ").trimmedWhitespace + "\n"
    }
    return line(header) + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" + rows.map(line).joined()
}

#if canImport(Glibc)
import Glibc
#endif

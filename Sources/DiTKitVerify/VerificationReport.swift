// The readable verification table.
import DiTKitCore

extension VerificationResult {
    /// A table of every compared layer and the final verdict line.
    public var text: String {
        func sci(_ v: Double) -> String { NumberFormat.scientific(v, 2) }
        var out = "\(model): \(NumberFormat.counted(layers.count, "layer")) compared, profile \(profile.name) (rel L2 <= \(sci(profile.maxRelL2)))\n"
        if let b = baseline?.label { out += "\(b.0): \(b.1)\n" }
        out += "\n"
        let header = ["layer", "max_abs", "mean_abs", "rel_l2", "cosine", "sqnr_db", "threshold", "result"]
        var rows: [[String]] = []
        for l in layers {
            rows.append([l.name, sci(l.maxAbs), sci(l.meanAbs), sci(l.relL2), NumberFormat.fixed(l.cosine, 6),
                         l.sqnrDB.isFinite ? NumberFormat.fixed(l.sqnrDB, 1) : "inf", sci(l.threshold),
                         l.passed ? "ok" : (l.nonFinite > 0 ? "FAIL (\(l.nonFinite) non-finite)" : "FAIL")])
        }
        out += tableText(header: header, rows: rows, right: [1, 2, 3, 4, 5, 6])
        if !skipped.isEmpty { out += "\nskipped (not produced by DiTKit): " + skipped.map { TerminalText.escaped($0) }.joined(separator: ", ") + "\n" }
        out += "\n" + (passed ? "PASSED" : "FAILED: first failing layer \(firstFailingLayer ?? "(none compared)")") + "\n"
        return out
    }
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


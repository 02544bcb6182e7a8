// What `ditkit inspect` prints: a listing of a container as JSON or as a table.
import DiTKitCore

/// Hashes every tensor of a container.
public enum TensorHashing {
    /// SHA-256 of every tensor's C-contiguous little-endian bytes, in `tensors` order, using
    /// all cores. Throws the first error met.
    public static func hashAll(_ c: any TensorContainer) throws -> [String] {
        // Larger tensors first so the cores finish together.
        let order = c.tensors.indices.sorted { c.tensors[$0].byteCount > c.tensors[$1].byteCount }
        return try parallelMap(c.tensors.count, order: order) { try c.sha256(of: $0) }
    }
}

/// Builds the inspect listing.
public enum ContainerListing {
    /// `{"format", "tensors": [{"name","dtype","shape"[,"sha256"]}], "objects": {...}, "metadata": {...}}`.
    public static func json(_ c: any TensorContainer, hashes: [String]?) -> JSONValue {
        var tensors: [JSONValue] = []
        for (k, t) in c.tensors.enumerated() {
            var m: [(String, JSONValue)] = [("name", .string(t.name)), ("dtype", .string(t.dtype.name)), ("shape", .array(t.shape.map { .int($0) }))]
            if let hashes { m.append(("sha256", .string(hashes[k]))) }
            tensors.append(.object(m))
        }
        return .object([
            ("format", .string(c.format.rawValue)),
            ("tensors", .array(tensors)),
            ("objects", .object(c.objects.map { ($0.name, .string($0.value)) })),
            ("metadata", .object(c.metadata.map { ($0.key, .string($0.value)) })),
        ])
    }

    /// Widest name (tensor, object or metadata key) a table shows; longer ones are cut in the
    /// middle with `…` (the JSON listing has them whole).
    public static let nameWidth = 120
    /// Widest object or metadata value a table shows.
    public static let valueWidth = 400

    /// A readable table: name, dtype, shape, parameters, bytes; totals; then objects and metadata.
    /// Every name and value from the file is escaped (`TerminalText`) and elided to `nameWidth` or
    /// `valueWidth` characters, so one huge or hostile name can neither widen every row nor drive
    /// the terminal.
    public static func table(_ c: any TensorContainer, hashes: [String]?) -> String {
        let rows = c.tensors.enumerated().map { (k, t) -> [String] in
            var r = [t.name, t.dtype.name, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", grouped(t.elementCount), grouped(t.byteCount)]
            if let hashes { r.append(hashes[k]) }
            return r
        }
        var header = ["name", "dtype", "shape", "parameters", "bytes"]
        if hashes != nil { header.append("sha256") }
        let rightAligned: Set<Int> = [3, 4]
        var out = "\(TerminalText.escaped(c.path)): \(c.format.rawValue), \(c.tensors.count) tensors\n\n"
        out += renderTable(header: header, rows: rows, rightAligned: rightAligned)
        let params = c.tensors.reduce(0) { $0 + $1.elementCount }
        let bytes = c.tensors.reduce(0) { $0 + $1.byteCount }
        var byType: [DType: Int] = [:]
        for t in c.tensors { byType[t.dtype, default: 0] += 1 }
        let types = byType.sorted { $0.key.name < $1.key.name }.map { "\($0.value) \($0.key.name)" }.joined(separator: ", ")
        out += "\ntotal: \(c.tensors.count) tensors (\(types.isEmpty ? "none" : types)), \(grouped(params)) parameters, \(grouped(bytes)) bytes\n"
        func pairs(_ items: [(String, String)]) {
            let shown = items.map { (TerminalText.elided($0.0, width: nameWidth), TerminalText.elided($0.1, width: valueWidth)) }
            let w = shown.map(\.0.count).max() ?? 0
            for (name, value) in shown { out += "  " + padRight(name, w) + "  " + value + "\n" }
        }
        if !c.objects.isEmpty {
            out += "\nobjects:\n"
            pairs(c.objects.map { ($0.name, $0.value) })
        }
        if !c.metadata.isEmpty {
            out += "\nmetadata:\n"
            pairs(c.metadata.map { ($0.key, $0.value) })
        }
        return out
    }
}

/// Renders rows as aligned columns under a header and a rule. Cells are escaped and elided to
/// `ContainerListing.nameWidth` characters (`TerminalText.elided`): cells may come from files.
public func renderTable(header: [String], rows: [[String]], rightAligned: Set<Int> = []) -> String {
    let rows = rows.map { $0.map { TerminalText.elided($0, width: ContainerListing.nameWidth) } }
    var widths = header.map(\.count)
    for r in rows { for (k, cell) in r.enumerated() where k < widths.count { widths[k] = max(widths[k], cell.count) } }
    func line(_ cells: [String]) -> String {
        var parts: [String] = []
        for (k, cell) in cells.enumerated() {
            let last = k == cells.count - 1
            if rightAligned.contains(k) { parts.append(padLeft(cell, widths[k])) } else { parts.append(last ? cell : padRight(cell, widths[k])) }
        }
        return parts.joined(separator: "  ") + "\n"
    }
    var out = line(header)
    out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
    for r in rows { out += line(r) }
    return out
}

/// Formats an integer with thousands separators (`675,129,632`).
public func grouped(_ n: Int) -> String {
    let s = String(n.magnitude)
    var out = ""
    for (k, c) in s.enumerated() {
        if k > 0 && (s.count - k) % 3 == 0 { out += "," }
        out.append(c)
    }
    return n < 0 ? "-" + out : out
}

/// Pads `s` on the right to `width` characters.
public func padRight(_ s: String, _ width: Int) -> String { s.count >= width ? s : s + String(repeating: " ", count: width - s.count) }
/// Pads `s` on the left to `width` characters.
public func padLeft(_ s: String, _ width: Int) -> String { s.count >= width ? s : String(repeating: " ", count: width - s.count) + s }

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

    /// A readable table: name, dtype, shape, parameters, bytes; totals; then objects and metadata.
    public static func table(_ c: any TensorContainer, hashes: [String]?) -> String {
        let rows = c.tensors.enumerated().map { (k, t) -> [String] in
            var r = [t.name, t.dtype.name, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", grouped(t.elementCount), grouped(t.byteCount)]
            if let hashes { r.append(hashes[k]) }
            return r
        }
        var header = ["name", "dtype", "shape", "parameters", "bytes"]
        if hashes != nil { header.append("sha256") }
        let rightAligned: Set<Int> = [3, 4]
        var out = "\(c.path): \(c.format.rawValue), \(c.tensors.count) tensors\n\n"
        out += renderTable(header: header, rows: rows, rightAligned: rightAligned)
        let params = c.tensors.reduce(0) { $0 + $1.elementCount }
        let bytes = c.tensors.reduce(0) { $0 + $1.byteCount }
        var byType: [DType: Int] = [:]
        for t in c.tensors { byType[t.dtype, default: 0] += 1 }
        let types = byType.sorted { $0.key.name < $1.key.name }.map { "\($0.value) \($0.key.name)" }.joined(separator: ", ")
        out += "\ntotal: \(c.tensors.count) tensors (\(types.isEmpty ? "none" : types)), \(grouped(params)) parameters, \(grouped(bytes)) bytes\n"
        if !c.objects.isEmpty {
            out += "\nobjects:\n"
            let w = c.objects.map(\.name.count).max() ?? 0
            for o in c.objects { out += "  " + padRight(o.name, w) + "  " + o.value + "\n" }
        }
        if !c.metadata.isEmpty {
            out += "\nmetadata:\n"
            let w = c.metadata.map(\.key.count).max() ?? 0
            for m in c.metadata { out += "  " + padRight(m.key, w) + "  " + m.value + "\n" }
        }
        return out
    }
}

/// Renders rows as aligned columns under a header and a rule.
public func renderTable(header: [String], rows: [[String]], rightAligned: Set<Int> = []) -> String {
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

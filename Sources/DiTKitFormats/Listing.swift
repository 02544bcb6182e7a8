// What `ditkit inspect` prints: a listing of a container as JSON or as a table.
import DiTKitCore

/// Hashes every tensor of a container.
public enum TensorHashing {
    /// The checksum (`algorithm`) of every tensor's C-contiguous little-endian bytes, in `tensors`
    /// order, using all cores. Throws the first error met.
    public static func hashAll(_ c: any TensorContainer, _ algorithm: ChecksumAlgorithm) throws -> [String] {
        // Larger tensors first so the cores finish together.
        let order = c.tensors.indices.sorted { c.tensors[$0].byteCount > c.tensors[$1].byteCount }
        return try parallelMap(c.tensors.count, order: order) { try c.checksum(of: $0, algorithm) }
    }
}

/// Builds the inspect listing.
public enum ContainerListing {
    /// One listed tensor: a container entry (by index), with the per-row scale vector a bundle
    /// stores beside an I8 tensor folded into it (a scale is part of its tensor, not a tensor).
    struct Listed {
        var index: Int
        var entry: TensorEntry
        var scale: (index: Int, entry: TensorEntry)?
        var bytes: Int { entry.byteCount + (scale?.entry.byteCount ?? 0) }
    }

    /// The tensors to list, in container order; for a bundle, each I8 tensor's `.scale` entry is
    /// folded into its tensor.
    static func listed(_ c: any TensorContainer) -> [Listed] {
        let scaled = Set((c as? NativeBundle)?.manifest.tensors.filter { $0.scale != nil }.map { $0.name + ".scale" } ?? [])
        var out: [Listed] = []
        var position: [String: Int] = [:]
        var scales: [(String, Int, TensorEntry)] = []
        for (k, t) in c.tensors.enumerated() {
            if scaled.contains(t.name) {
                scales.append((String(t.name.dropLast(".scale".count)), k, t))
            } else {
                position[t.name] = out.count
                out.append(Listed(index: k, entry: t))
            }
        }
        for (owner, k, t) in scales {
            if let p = position[owner] { out[p].scale = (k, t) } else { out.append(Listed(index: k, entry: t)) }
        }
        return out
    }

    /// `{"format", "tensors": [{"name","dtype","shape"[,"xxh3_128"][,"sha256"][,"scale"]}], "objects": {...}, "metadata": {...}}`:
    /// each tensor gets a member per algorithm in `hashes` (the digests in container order). A
    /// bundle's I8 tensor carries its per-row scales as `"scale": {"dtype", "shape"[, digests]}`.
    public static func json(_ c: any TensorContainer, hashes: [(ChecksumAlgorithm, [String])] = []) -> JSONValue {
        var tensors: [JSONValue] = []
        for l in listed(c) {
            let t = l.entry
            var m: [(String, JSONValue)] = [("name", .string(t.name)), ("dtype", .string(t.dtype.name)), ("shape", .array(t.shape.map { .int($0) }))]
            for (algorithm, digests) in hashes { m.append((algorithm.rawValue, .string(digests[l.index]))) }
            if let s = l.scale {
                var sm: [(String, JSONValue)] = [("dtype", .string(s.entry.dtype.name)), ("shape", .array(s.entry.shape.map { .int($0) }))]
                for (algorithm, digests) in hashes { sm.append((algorithm.rawValue, .string(digests[s.index]))) }
                m.append(("scale", .object(sm)))
            }
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
    public static func table(_ c: any TensorContainer, hashes: [(ChecksumAlgorithm, [String])] = []) -> String {
        let list = listed(c)
        let rows = list.map { l -> [String] in
            let t = l.entry
            var r = [t.name, t.dtype.name, "[" + t.shape.map(String.init).joined(separator: ", ") + "]", grouped(t.elementCount), grouped(l.bytes)]
            for (_, digests) in hashes { r.append(digests[l.index]) }
            return r
        }
        var header = ["name", "dtype", "shape", "parameters", "bytes"]
        for (algorithm, _) in hashes { header.append(algorithm.rawValue) }
        let rightAligned: Set<Int> = [3, 4]
        var out = "\(TerminalText.escaped(c.path)): \(c.format.rawValue), \(list.count) tensor\(list.count == 1 ? "" : "s")\n\n"
        out += renderTable(header: header, rows: rows, rightAligned: rightAligned)
        let params = list.reduce(0) { $0 + $1.entry.elementCount }
        let bytes = list.reduce(0) { $0 + $1.bytes }
        var byType: [DType: Int] = [:]
        for l in list { byType[l.entry.dtype, default: 0] += 1 }
        let types = byType.sorted { $0.key.name < $1.key.name }.map { "\($0.value) \($0.key.name)" }.joined(separator: ", ")
        out += "\ntotal: \(list.count) tensor\(list.count == 1 ? "" : "s") (\(types.isEmpty ? "none" : types)), \(grouped(params)) parameters, \(grouped(bytes)) bytes\n"
        let scaled = list.filter { $0.scale != nil }.count
        if scaled > 0 {
            out += "(\(scaled) I8 tensor\(scaled == 1 ? "" : "s") with \(scaled == 1 ? "its" : "their") per-row F32 scales: their bytes include the scales"
            out += hashes.isEmpty ? ")\n" : "; the checksums are the I8 values')\n"
        }
        if c is NativeBundle { out += "(provenance, dtype policy and error figures: ditkit show \(TerminalText.escaped(c.path)))\n" }
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

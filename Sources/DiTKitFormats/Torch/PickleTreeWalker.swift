// Turns an unpickled tree into named tensors and printable objects.
//
// Every tensor gets a dotted path from the root: dict keys as written (integer keys in
// decimal), list and tuple indices in decimal, Namespace fields by name
// (`ema.blocks.0.attn.qkv.weight`, `opt.state.0.exp_avg`). Non-tensor leaves become
// objects rendered as Python would print them (`args.lr` -> `0.0001`); a list or tuple with
// no tensor inside is one object (`opt.param_groups.0.betas` -> `(0.9, 0.999)`).
//
// The tree may share nodes through the memo, so a small pickle can reach one node by millions
// of paths. The limits therefore count what walking and rendering produce, not what was parsed:
// nodes visited along every path, tensors and objects listed, and the bytes of their names and
// renderings. Each object's rendering is cut at `maxRenderedBytes` (ending in `…`).
import DiTKitCore

/// Limits on walking a tree (which may share nodes through the memo).
public struct WalkLimits: Sendable {
    /// Deepest nesting of containers.
    public var maxDepth = 256
    /// Nodes visited, counting a shared node once for every path that reaches it.
    public var maxVisits = 5_000_000
    /// Tensors and objects listed.
    public var maxEntries = 200_000
    /// UTF-8 bytes of every name and rendered value listed, together.
    public var maxOutputBytes = 64 << 20
    /// Longest name (dotted path) of a tensor or object, in UTF-8 bytes.
    public var maxNameBytes = 4096
    /// Longest rendering of one object, in UTF-8 bytes; longer renderings are cut and end in `…`.
    public var maxRenderedBytes = 4096
    public init() {}
}

/// The result of a walk.
public struct TreeContents: Sendable {
    public var tensors: [(name: String, record: TensorRecord)] = []
    public var objects: [(name: String, value: String)] = []
}

/// Why a tree could not be walked.
public enum WalkError: Error, CustomStringConvertible, Sendable {
    case tooDeep(String, Int)
    case tooLarge(String)
    case selfReference(String)
    case nameTooLong(String, limit: Int)
    case duplicateName(String)
    case unsupportedKey(String)

    public var description: String {
        switch self {
        case let .tooDeep(p, d): return "checkpoint structure nests deeper than \(d) levels at \(TerminalText.quoted(p))"
        case let .tooLarge(what): return "checkpoint structure expands to \(what) (a memo bomb?)"
        case let .selfReference(p):
            return "checkpoint structure contains itself at \(TerminalText.quoted(p.isEmpty ? "(the root)" : p)): a self-referencing structure cannot be listed as named tensors"
        case let .nameTooLong(p, l): return "a tensor or object name is longer than \(l) bytes: \(TerminalText.quoted(p))"
        case let .duplicateName(n): return "two values have the same path \(TerminalText.quoted(n))"
        case let .unsupportedKey(p): return "dict key at \(TerminalText.quoted(p)) is not a string or an integer"
        }
    }
}

/// Walks a `PickleTree` into tensors and objects.
public struct PickleTreeWalker {
    private var contents = TreeContents()
    private var visits = 0
    private var outputBytes = 0
    private var onPath = Set<ObjectIdentifier>()
    private var names = UniqueStrings()
    /// Whether a container node holds a tensor, computed once per node.
    private var holdsTensor: [ObjectIdentifier: Bool] = [:]
    private let limits: WalkLimits

    /// Walks `root`. Throws `WalkError`.
    public static func walk(_ root: PickleValue, limits: WalkLimits = WalkLimits()) throws -> TreeContents {
        var w = PickleTreeWalker(limits: limits)
        try w.visit(root, path: "", depth: 0)
        return w.contents
    }

    private init(limits: WalkLimits) { self.limits = limits }

    /// `path.component`, refused beyond `maxNameBytes` before the longer string is built.
    private func join(_ path: String, _ component: String) throws -> String {
        let length = path.utf8.count + (path.isEmpty ? 0 : 1) + component.utf8.count
        guard length <= limits.maxNameBytes else {
            throw WalkError.nameTooLong(String(path.prefix(100)) + (path.isEmpty ? "" : ".") + String(component.prefix(100)), limit: limits.maxNameBytes)
        }
        return path.isEmpty ? component : path + "." + component
    }

    private mutating func visited() throws {
        visits += 1
        guard visits <= limits.maxVisits else { throw WalkError.tooLarge("more than \(limits.maxVisits) nodes visited") }
    }

    private mutating func addEntry(_ name: String, valueBytes: Int) throws {
        guard contents.tensors.count + contents.objects.count < limits.maxEntries else {
            throw WalkError.tooLarge("more than \(limits.maxEntries) tensors and objects")
        }
        outputBytes += name.utf8.count + valueBytes
        guard outputBytes <= limits.maxOutputBytes else {
            throw WalkError.tooLarge("more than \(limits.maxOutputBytes) bytes of names and values")
        }
        guard names.insert(name) else { throw WalkError.duplicateName(name) }
    }

    private mutating func addObject(_ name: String, _ value: String) throws {
        try addEntry(name, valueBytes: value.utf8.count)
        contents.objects.append((name, value))
    }

    private mutating func visit(_ v: PickleValue, path: String, depth: Int) throws {
        try visited()
        guard depth <= limits.maxDepth else { throw WalkError.tooDeep(path, limits.maxDepth) }
        switch v {
        case .tensor(let t):
            try addEntry(path, valueBytes: 0)
            contents.tensors.append((path, t))
        case .dict(let d):
            let id = ObjectIdentifier(d)
            guard onPath.insert(id).inserted else { throw WalkError.selfReference(path) }
            defer { onPath.remove(id) }
            if d.items.isEmpty, !path.isEmpty {
                try addObject(path, d.isOrdered ? "OrderedDict()" : "{}")
            }
            for (k, value) in d.items {
                let component: String
                switch k {
                case .string(let s): component = s
                case .int(let i): component = String(i)
                case .bool(let b): component = b ? "True" : "False"
                default: throw WalkError.unsupportedKey(path)
                }
                try visit(value, path: try join(path, component), depth: depth + 1)
            }
        case .list(let l):
            try sequence(v, node: l, l.items, path: path, depth: depth)
        case .tuple(let t):
            try sequence(v, node: t, t.items, path: path, depth: depth)
        case .object(let o) where o.kind == .namespace:
            let id = ObjectIdentifier(o)
            guard onPath.insert(id).inserted else { throw WalkError.selfReference(path) }
            defer { onPath.remove(id) }
            if o.fields.isEmpty {
                try addObject(path, "Namespace()")
            }
            for (name, value) in o.fields {
                try visit(value, path: try join(path, name), depth: depth + 1)
            }
        default:
            try addObject(path, PythonRepr.render(v, limit: limits.maxRenderedBytes))
        }
    }

    private mutating func sequence(_ value: PickleValue, node: PickleNode, _ items: [PickleValue], path: String, depth: Int) throws {
        let id = ObjectIdentifier(node)
        guard onPath.insert(id).inserted else { throw WalkError.selfReference(path) }
        defer { onPath.remove(id) }
        if try !containsTensor(value, path: path, depth: depth) {
            try addObject(path, PythonRepr.render(value, limit: limits.maxRenderedBytes))
            return
        }
        for (k, item) in items.enumerated() {
            try visit(item, path: try join(path, String(k)), depth: depth + 1)
        }
    }

    /// Whether `v` holds a tensor anywhere below. Each container node is examined once per walk
    /// (shared nodes are answered from `holdsTensor`); a node met again while it is being
    /// examined (a self-reference) adds nothing.
    private mutating func containsTensor(_ v: PickleValue, path: String, depth: Int) throws -> Bool {
        let node: PickleNode
        let children: [PickleValue]
        switch v {
        case .tensor: return true
        case .list(let l): node = l; children = l.items
        case .tuple(let t): node = t; children = t.items
        case .dict(let d): node = d; children = d.items.map(\.value)
        case .object(let o): node = o; children = o.fields.map(\.value)
        default: return false
        }
        let id = ObjectIdentifier(node)
        if let known = holdsTensor[id] { return known }
        guard depth <= limits.maxDepth else { throw WalkError.tooDeep(path, limits.maxDepth) }
        holdsTensor[id] = false   // in progress: a self-reference finds nothing new
        var found = false
        for child in children {
            try visited()
            if try containsTensor(child, path: path, depth: depth + 1) { found = true; break }
        }
        holdsTensor[id] = found
        return found
    }
}

/// Renders inert values the way Python's `repr` (or `str` at the top level) would.
public enum PythonRepr {
    /// Python's `repr(float)`: shortest round-trip digits, exponent form when the decimal
    /// exponent is below -4 or at least 16.
    public static func float(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d < 0 ? "-inf" : "inf" }
        if d == 0 { return d.sign == .minus ? "-0.0" : "0.0" }
        // Swift's description is also shortest round-trip; take its digits and exponent.
        let s = d.magnitude.description
        var mantissa = s, exp = 0
        if let e = s.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = String(s[..<e])
            exp = Int(s[s.index(after: e)...]) ?? 0
        }
        var digits = mantissa.replacingOccurrences(of: ".", with: "")
        let pointIndex = mantissa.firstIndex(of: ".").map { mantissa.distance(from: mantissa.startIndex, to: $0) } ?? mantissa.count
        // Value = 0.digits * 10^(pointIndex + exp); normalise leading zeros away.
        var decimalExponent = pointIndex + exp
        while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); decimalExponent -= 1 }
        while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
        let sci = decimalExponent - 1   // exponent in d.ddd form
        var out: String
        if sci < -4 || sci >= 16 {
            out = String(digits.first!)
            if digits.count > 1 { out += "." + digits.dropFirst() }
            out += "e" + (sci < 0 ? "-" : "+") + (abs(sci) < 10 ? "0" : "") + String(abs(sci))
        } else if decimalExponent <= 0 {
            out = "0." + String(repeating: "0", count: -decimalExponent) + digits
        } else if decimalExponent >= digits.count {
            out = digits + String(repeating: "0", count: decimalExponent - digits.count) + ".0"
        } else {
            let i = digits.index(digits.startIndex, offsetBy: decimalExponent)
            out = digits[..<i] + "." + digits[i...]
        }
        return d < 0 ? "-" + out : out
    }

    /// Python's `repr(str)` (single quotes unless the string holds one and no double quote).
    public static func string(_ s: String) -> String {
        let q: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(q)
        for u in s.unicodeScalars {
            switch u {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(u) == q { out += "\\" + String(q) } else if u.value < 0x20 || u.value == 0x7F {
                    out += "\\x" + (u.value < 16 ? "0" : "") + String(u.value, radix: 16)
                } else { out.unicodeScalars.append(u) }
            }
        }
        out.append(q)
        return out
    }

    /// Python's `repr(bytes)`.
    public static func bytes(_ b: [UInt8]) -> String {
        var out = "b'"
        for c in b {
            switch c {
            case UInt8(ascii: "\\"): out += "\\\\"
            case UInt8(ascii: "'"): out += "\\'"
            case 0x0A: out += "\\n"
            case 0x0D: out += "\\r"
            case 0x09: out += "\\t"
            case 0x20..<0x7F: out.unicodeScalars.append(Unicode.Scalar(c))
            default: out += "\\x" + (c < 16 ? "0" : "") + String(c, radix: 16)
            }
        }
        return out + "'"
    }

    /// Decimal text of a little-endian two's-complement integer.
    public static func bigInteger(_ le: [UInt8]) -> String {
        guard !le.isEmpty else { return "0" }
        let negative = le.last! & 0x80 != 0
        var mag = le
        if negative {
            // Two's complement negate.
            var carry = 1
            for k in 0..<mag.count {
                let v = Int(~mag[k]) + carry
                mag[k] = UInt8(truncatingIfNeeded: v)
                carry = v >> 8
            }
        }
        var digits: [UInt8] = []
        var words = mag
        while words.contains(where: { $0 != 0 }) {
            var rem = 0
            for k in (0..<words.count).reversed() {
                let cur = rem << 8 | Int(words[k])
                words[k] = UInt8(cur / 10)
                rem = cur % 10
            }
            digits.append(UInt8(rem))
        }
        let text = digits.isEmpty ? "0" : String(digits.reversed().map { Character(String($0)) })
        return negative ? "-" + text : text
    }

    /// Renders `v` as Python's `str` would (strings print bare at the top level, nested values as
    /// `repr`), in at most `limit` UTF-8 bytes: a longer rendering is cut and ends in `…`. Work is
    /// bounded by `limit` too: long strings and bytes are cut before they are escaped, every node
    /// prints at least one character, and a container met again inside itself prints as `[...]`
    /// or `{...}`, as Python prints self-references.
    public static func render(_ v: PickleValue, limit: Int) -> String {
        var r = Renderer(remaining: limit)
        r.render(v, topLevel: true, depth: 0)
        return r.truncated ? r.out + "…" : r.out
    }

    /// Appends renderings to `out` until `remaining` bytes are used.
    private struct Renderer {
        var out = ""
        var remaining: Int
        var truncated = false
        var active = Set<ObjectIdentifier>()

        var exhausted: Bool { remaining <= 0 }

        mutating func emit(_ s: String) {
            guard !exhausted else { truncated = true; return }
            let n = s.utf8.count
            if n <= remaining {
                out += s
                remaining -= n
                return
            }
            for u in s.unicodeScalars {
                let w = UTF8.width(u)
                guard w <= remaining else { break }
                out.unicodeScalars.append(u)
                remaining -= w
            }
            remaining = 0
            truncated = true
        }

        mutating func render(_ v: PickleValue, topLevel: Bool, depth: Int) {
            guard !exhausted else { truncated = true; return }
            guard depth < 64 else { emit("..."); return }
            switch v {
            case .none: emit("None")
            case .bool(let b): emit(b ? "True" : "False")
            case .int(let i): emit(String(i))
            case .bigInt(let b): emit(b.count <= 256 ? bigInteger(b) : "<int of \(b.count * 8) bits>")
            case .float(let d): emit(float(d))
            case .string(let s):
                // Cut before escaping: the rendering is at least as long as the prefix.
                let head = String(String.UnicodeScalarView(s.unicodeScalars.prefix(remaining + 1)))
                emit(topLevel ? head : string(head))
            case .bytes(let b): emit(bytes(Array(b.prefix(remaining + 1))))
            case .tuple(let t):
                container(t, open: "(", close: t.items.count == 1 ? ",)" : ")", items: t.items, depth: depth)
            case .list(let l): container(l, open: "[", close: "]", items: l.items, depth: depth)
            case .set(let s):
                if s.items.isEmpty { emit(s.isFrozen ? "frozenset()" : "set()"); return }
                container(s, open: s.isFrozen ? "frozenset({" : "{", close: s.isFrozen ? "})" : "}", items: s.items, depth: depth)
            case .dict(let d):
                let id = ObjectIdentifier(d)
                guard active.insert(id).inserted else { emit("{...}"); return }
                defer { active.remove(id) }
                emit("{")
                for (k, (key, value)) in d.items.enumerated() {
                    if k > 0 { emit(", ") }
                    guard !exhausted else { break }
                    render(key, topLevel: false, depth: depth + 1)
                    emit(": ")
                    render(value, topLevel: false, depth: depth + 1)
                }
                emit("}")
            case .object(let o): emit(PythonRepr.object(o, limit: remaining))
            case .global(let g): emit("<\(g.pythonName)>")
            case .storage(let s): emit("<storage \(s.key)>")
            case .tensor(let t): emit("tensor(shape=\(t.shape), dtype=\(t.dtype))")
            case .mark: emit("<mark>")
            }
        }

        mutating func container(_ node: PickleNode, open: String, close: String, items: [PickleValue], depth: Int) {
            let id = ObjectIdentifier(node)
            guard active.insert(id).inserted else { emit(open.hasSuffix("{") ? "{...}" : open == "(" ? "(...)" : "[...]"); return }
            defer { active.remove(id) }
            emit(open)
            for (k, item) in items.enumerated() {
                if k > 0 { emit(", ") }
                guard !exhausted else { break }
                render(item, topLevel: false, depth: depth + 1)
            }
            emit(close)
        }
    }

    /// An inert object as Python prints it; file strings inside are cut to `limit` bytes first.
    private static func object(_ o: PickleObject, limit: Int) -> String {
        func cut(_ s: String) -> String { String(String.UnicodeScalarView(s.unicodeScalars.prefix(limit + 1))) }
        switch o.kind {
        case .device:
            let parts = o.arguments.prefix(2).map { a -> String in
                switch a {
                case .string(let s): return cut(s)
                case .int(let i): return String(i)
                default: return "?"
                }
            }
            return parts.joined(separator: ":")
        case .numpyDType:
            if case .string(let s)? = o.arguments.first { return "dtype('\(cut(s))')" }
            return "numpy.dtype"
        case .numpyScalar:
            return numpyScalar(o) ?? "numpy scalar"
        case .namespace:
            var out = "Namespace("
            for (k, f) in o.fields.enumerated() {
                if k > 0 { out += ", " }
                out += cut(f.name) + "=..."
                if out.utf8.count > limit { break }
            }
            return out + ")"
        }
    }

    /// Decodes `numpy.core.multiarray.scalar(dtype, bytes)` for common dtypes.
    static func numpyScalar(_ o: PickleObject) -> String? {
        guard o.arguments.count == 2, case .object(let dt) = o.arguments[0], dt.kind == .numpyDType,
              case .string(let code)? = dt.arguments.first, case .bytes(let raw) = o.arguments[1] else { return nil }
        var bigEndian = false
        if case .tuple(let st)? = dt.state, st.items.count > 1, case .string(let order) = st.items[1] { bigEndian = order == ">" }
        let le = bigEndian ? raw.reversed() : raw
        func u64() -> UInt64 { le.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }
        switch (code, le.count) {
        case ("f8", 8): return float(Double(bitPattern: u64()))
        case ("f4", 4): return float(Double(Float(bitPattern: UInt32(u64()))))
        case ("f2", 2): return float(Double(Float(Float16(bitPattern: UInt16(u64())))))
        case ("i8", 8): return String(Int64(bitPattern: u64()))
        case ("i4", 4): return String(Int32(bitPattern: UInt32(u64())))
        case ("i2", 2): return String(Int16(bitPattern: UInt16(u64())))
        case ("i1", 1): return String(Int8(bitPattern: UInt8(u64())))
        case ("u8", 8), ("u4", 4), ("u2", 2), ("u1", 1): return String(u64())
        case ("b1", 1): return u64() != 0 ? "True" : "False"
        default: return nil
        }
    }
}

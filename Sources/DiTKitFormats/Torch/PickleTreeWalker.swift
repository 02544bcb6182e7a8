// Turns an unpickled tree into named tensors and printable objects.
//
// Every tensor gets a dotted path from the root: dict keys as written (integer keys in
// decimal), list and tuple indices in decimal, Namespace fields by name
// (`ema.blocks.0.attn.qkv.weight`, `opt.state.0.exp_avg`). Non-tensor leaves become
// objects rendered as Python would print them (`args.lr` -> `0.0001`); a list or tuple with
// no tensor inside is one object (`opt.param_groups.0.betas` -> `(0.9, 0.999)`).
import DiTKitCore

/// Limits on walking a tree (which may share nodes through the memo).
public struct WalkLimits: Sendable {
    public var maxDepth = 256
    public var maxVisits = 20_000_000
    public var maxTensors = 2_000_000
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
    case cycle(String)
    case duplicateName(String)
    case unsupportedKey(String)

    public var description: String {
        switch self {
        case let .tooDeep(p, d): return "checkpoint structure nests deeper than \(d) levels at '\(p)'"
        case let .tooLarge(what): return "checkpoint structure expands to \(what) (a memo bomb?)"
        case let .cycle(p): return "checkpoint structure contains a reference cycle at '\(p)'"
        case let .duplicateName(n): return "two values have the same path '\(n)'"
        case let .unsupportedKey(p): return "dict key at '\(p)' is not a string or an integer"
        }
    }
}

/// Walks a `PickleTree` into tensors and objects.
public struct PickleTreeWalker {
    private var contents = TreeContents()
    private var visits = 0
    private var onPath = Set<ObjectIdentifier>()
    private var names = Set<String>()
    private let limits: WalkLimits

    /// Walks `root`. Throws `WalkError`.
    public static func walk(_ root: PickleValue, limits: WalkLimits = WalkLimits()) throws -> TreeContents {
        var w = PickleTreeWalker(limits: limits)
        try w.visit(root, path: "", depth: 0)
        return w.contents
    }

    private init(limits: WalkLimits) { self.limits = limits }

    private static func join(_ path: String, _ component: String) -> String {
        path.isEmpty ? component : path + "." + component
    }

    private mutating func addName(_ name: String) throws {
        guard names.insert(name).inserted else { throw WalkError.duplicateName(name) }
    }

    private mutating func visit(_ v: PickleValue, path: String, depth: Int) throws {
        visits += 1
        guard visits <= limits.maxVisits else { throw WalkError.tooLarge("more than \(limits.maxVisits) nodes") }
        guard depth <= limits.maxDepth else { throw WalkError.tooDeep(path, limits.maxDepth) }
        switch v {
        case .tensor(let t):
            guard contents.tensors.count < limits.maxTensors else { throw WalkError.tooLarge("more than \(limits.maxTensors) tensors") }
            try addName(path)
            contents.tensors.append((path, t))
        case .dict(let d):
            let id = ObjectIdentifier(d)
            guard onPath.insert(id).inserted else { throw WalkError.cycle(path) }
            defer { onPath.remove(id) }
            if d.items.isEmpty, !path.isEmpty {
                try addName(path)
                contents.objects.append((path, d.isOrdered ? "OrderedDict()" : "{}"))
            }
            for (k, value) in d.items {
                let component: String
                switch k {
                case .string(let s): component = s
                case .int(let i): component = String(i)
                case .bool(let b): component = b ? "True" : "False"
                default: throw WalkError.unsupportedKey(path)
                }
                try visit(value, path: Self.join(path, component), depth: depth + 1)
            }
        case .list(let l):
            try sequence(v, node: l, l.items, path: path, depth: depth)
        case .tuple(let t):
            try sequence(v, node: t, t.items, path: path, depth: depth)
        case .object(let o) where o.kind == .namespace:
            let id = ObjectIdentifier(o)
            guard onPath.insert(id).inserted else { throw WalkError.cycle(path) }
            defer { onPath.remove(id) }
            if o.fields.isEmpty {
                try addName(path)
                contents.objects.append((path, "Namespace()"))
            }
            for (name, value) in o.fields {
                try visit(value, path: Self.join(path, name), depth: depth + 1)
            }
        default:
            try addName(path)
            var budget = 4096
            contents.objects.append((path, try PythonRepr.render(v, topLevel: true, depth: 0, budget: &budget)))
        }
    }

    private mutating func sequence(_ value: PickleValue, node: PickleNode, _ items: [PickleValue], path: String, depth: Int) throws {
        let id = ObjectIdentifier(node)
        guard onPath.insert(id).inserted else { throw WalkError.cycle(path) }
        defer { onPath.remove(id) }
        var budget = 100_000
        if try !containsTensor(items, depth: depth, budget: &budget) {
            try addName(path)
            var chars = 4096
            contents.objects.append((path, try PythonRepr.render(value, topLevel: true, depth: 0, budget: &chars)))
            return
        }
        for (k, item) in items.enumerated() {
            try visit(item, path: Self.join(path, String(k)), depth: depth + 1)
        }
    }

    private mutating func containsTensor(_ items: [PickleValue], depth: Int, budget: inout Int) throws -> Bool {
        guard depth <= limits.maxDepth else { throw WalkError.tooDeep("", limits.maxDepth) }
        for item in items {
            budget -= 1
            visits += 1
            guard budget > 0, visits <= limits.maxVisits else { throw WalkError.tooLarge("more than \(limits.maxVisits) nodes") }
            switch item {
            case .tensor: return true
            case .list(let l): if try containsTensor(l.items, depth: depth + 1, budget: &budget) { return true }
            case .tuple(let t): if try containsTensor(t.items, depth: depth + 1, budget: &budget) { return true }
            case .dict(let d): if try containsTensor(d.items.map(\.value), depth: depth + 1, budget: &budget) { return true }
            case .object(let o): if try containsTensor(o.fields.map(\.value), depth: depth + 1, budget: &budget) { return true }
            default: break
            }
        }
        return false
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

    /// Renders `v`; strings print bare at the top level (like `str`). `budget` caps the output size.
    public static func render(_ v: PickleValue, topLevel: Bool, depth: Int, budget: inout Int) throws -> String {
        guard depth < 64 else { return "..." }
        guard budget > 0 else { return "..." }
        let out: String
        switch v {
        case .none: out = "None"
        case .bool(let b): out = b ? "True" : "False"
        case .int(let i): out = String(i)
        case .bigInt(let b): out = bigInteger(b)
        case .float(let d): out = float(d)
        case .string(let s): out = topLevel ? s : string(s)
        case .bytes(let b): out = bytes(b)
        case .tuple(let t):
            let parts = try seq(t.items, depth: depth, budget: &budget)
            out = "(" + parts + (t.items.count == 1 ? ",)" : ")")
        case .list(let l): out = "[" + (try seq(l.items, depth: depth, budget: &budget)) + "]"
        case .set(let s):
            let inner = try seq(s.items, depth: depth, budget: &budget)
            out = s.isFrozen ? "frozenset({\(inner)})" : (s.items.isEmpty ? "set()" : "{\(inner)}")
        case .dict(let d):
            var parts: [String] = []
            for (k, val) in d.items {
                guard budget > 0 else { parts.append("..."); break }
                parts.append(try render(k, topLevel: false, depth: depth + 1, budget: &budget) + ": " + render(val, topLevel: false, depth: depth + 1, budget: &budget))
            }
            out = "{" + parts.joined(separator: ", ") + "}"
        case .object(let o): out = object(o)
        case .global(let g): out = "<\(g.pythonName)>"
        case .storage(let s): out = "<storage \(s.key)>"
        case .tensor(let t): out = "tensor(shape=\(t.shape), dtype=\(t.dtype))"
        case .mark: out = "<mark>"
        }
        budget -= out.count
        return out
    }

    private static func seq(_ items: [PickleValue], depth: Int, budget: inout Int) throws -> String {
        var parts: [String] = []
        for item in items {
            guard budget > 0 else { parts.append("..."); break }
            parts.append(try render(item, topLevel: false, depth: depth + 1, budget: &budget))
        }
        return parts.joined(separator: ", ")
    }

    private static func object(_ o: PickleObject) -> String {
        switch o.kind {
        case .device:
            let parts = o.arguments.map { a -> String in
                switch a {
                case .string(let s): return s
                case .int(let i): return String(i)
                default: return "?"
                }
            }
            return parts.joined(separator: ":")
        case .numpyDType:
            if case .string(let s)? = o.arguments.first { return "dtype('\(s)')" }
            return "numpy.dtype"
        case .numpyScalar:
            return numpyScalar(o) ?? "numpy scalar"
        case .namespace:
            return "Namespace(" + o.fields.map { "\($0.name)=..." }.joined(separator: ", ") + ")"
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

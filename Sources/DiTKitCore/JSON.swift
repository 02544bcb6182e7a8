// A strict JSON reader and a deterministic JSON writer.
//
// The reader keeps object member order, refuses duplicate member names, bounds nesting
// depth and input size, and never allocates more than the input can justify. The writer
// emits members in the order given, so output is byte-identical for equal values.

/// A JSON value with ordered objects.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    /// An integer literal that fits `Int` (no fraction, no exponent).
    case int(Int)
    /// Any other number.
    case double(Double)
    case string(String)
    case array([JSONValue])
    /// Members in document order; names are unique.
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y || (x.isNaN && y.isNaN)
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Member lookup on an object; `nil` for other values or a missing name.
    public subscript(key: String) -> JSONValue? {
        if case .object(let m) = self { return m.first(where: { $0.0 == key })?.1 }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int? { if case .int(let i) = self { return i }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var objectValue: [(String, JSONValue)]? { if case .object(let o) = self { return o }; return nil }
    /// The number as a `Double` (integers converted), `nil` otherwise.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
}

/// Why a JSON document was refused, with the byte offset where it went wrong.
public struct JSONError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let offset: Int
    public init(_ message: String, at offset: Int) {
        self.message = message
        self.offset = offset
    }
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

/// Parses JSON text strictly (RFC 8259), keeping member order.
public struct JSONReader {
    /// Maximum nesting of arrays and objects.
    public static let maxDepth = 128

    private let bytes: UnsafeRawBufferPointer
    private var i = 0
    private var depth = 0
    /// Values (scalars, arrays, objects) that may still be parsed, and the limit for messages.
    private var budget = Int.max
    private var maxValues = Int.max

    /// Parses one JSON document from UTF-8 `bytes`. Leading and trailing whitespace is allowed.
    /// With `maxValues`, a document holding more values than that (every scalar, array and object
    /// counts) is refused before its tree grows further: a tree costs far more memory than its text.
    public static func parse(_ bytes: UnsafeRawBufferPointer, maxValues: Int = Int.max) throws -> JSONValue {
        var r = JSONReader(bytes: bytes)
        r.setBudget(maxValues)
        r.skipWhitespace()
        let v = try r.value()
        r.skipWhitespace()
        if r.i != bytes.count { throw JSONError("unexpected data after the document", at: r.i) }
        return v
    }

    /// Reads a document whose top level is an object one member at a time, handing each member's
    /// name and value to `body` as soon as the value is parsed, so that only one member's tree is
    /// in memory at once. Refuses more than `maxMembers` members, more than `maxMemberValues`
    /// values in one member, and duplicate names. Errors thrown by `body` propagate unchanged.
    public static func forEachMember(in bytes: UnsafeRawBufferPointer, maxMembers: Int, maxMemberValues: Int,
                                     _ body: (String, JSONValue) throws -> Void) throws {
        var r = JSONReader(bytes: bytes)
        r.skipWhitespace()
        guard r.i < bytes.count, bytes[r.i] == UInt8(ascii: "{") else { throw JSONError("the document is not an object", at: r.i) }
        try r.enter()
        r.i += 1
        var seen = UniqueStrings()
        r.skipWhitespace()
        if r.i < bytes.count, bytes[r.i] == UInt8(ascii: "}") {
            r.i += 1
        } else {
            while true {
                r.skipWhitespace()
                guard r.i < bytes.count, bytes[r.i] == UInt8(ascii: "\"") else { throw JSONError("expected a member name", at: r.i) }
                let keyOffset = r.i
                guard seen.count < maxMembers else { throw JSONError("more than \(maxMembers) members", at: keyOffset) }
                let key = try r.string()
                if !seen.insert(key) { throw JSONError("duplicate member name \(TerminalText.quoted(key))", at: keyOffset) }
                r.skipWhitespace()
                guard r.i < bytes.count, bytes[r.i] == UInt8(ascii: ":") else { throw JSONError("expected ':'", at: r.i) }
                r.i += 1
                r.skipWhitespace()
                r.setBudget(maxMemberValues)
                try body(key, try r.value())
                r.skipWhitespace()
                guard r.i < bytes.count else { throw JSONError("unexpected end of input in an object", at: r.i) }
                if bytes[r.i] == UInt8(ascii: ",") { r.i += 1; continue }
                if bytes[r.i] == UInt8(ascii: "}") { r.i += 1; break }
                throw JSONError("expected ',' or '}'", at: r.i)
            }
        }
        r.skipWhitespace()
        if r.i != bytes.count { throw JSONError("unexpected data after the document", at: r.i) }
    }

    private mutating func setBudget(_ n: Int) {
        budget = n
        maxValues = n
    }

    /// Parses a JSON document held in a string.
    public static func parse(_ text: String) throws -> JSONValue {
        var copy = text
        return try copy.withUTF8 { try parse(UnsafeRawBufferPointer($0)) }
    }

    /// Parses a JSON document held in a byte array.
    public static func parse(_ data: [UInt8]) throws -> JSONValue {
        try data.withUnsafeBytes { try parse($0) }
    }

    private init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    private mutating func skipWhitespace() {
        while i < bytes.count {
            let c = bytes[i]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 } else { break }
        }
    }

    private mutating func value() throws -> JSONValue {
        guard i < bytes.count else { throw JSONError("unexpected end of input", at: i) }
        budget -= 1
        if budget < 0 { throw JSONError("more than \(maxValues) values", at: i) }
        switch bytes[i] {
        case UInt8(ascii: "{"): return try object()
        case UInt8(ascii: "["): return try array()
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
        default: throw JSONError("unexpected character \(TerminalText.quoted(String(Character(Unicode.Scalar(bytes[i])))))", at: i)
        }
    }

    private mutating func literal(_ word: String) throws {
        let start = i
        for c in word.utf8 {
            guard i < bytes.count, bytes[i] == c else { throw JSONError("invalid literal", at: start) }
            i += 1
        }
    }

    private mutating func enter() throws {
        depth += 1
        if depth > JSONReader.maxDepth { throw JSONError("nesting deeper than \(JSONReader.maxDepth)", at: i) }
    }

    private mutating func object() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        i += 1
        var members: [(String, JSONValue)] = []
        var seen = UniqueStrings()
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
        while true {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw JSONError("expected a member name", at: i) }
            let keyOffset = i
            let key = try string()
            if !seen.insert(key) { throw JSONError("duplicate member name \(TerminalText.quoted(key))", at: keyOffset) }
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw JSONError("expected ':'", at: i) }
            i += 1
            skipWhitespace()
            members.append((key, try value()))
            skipWhitespace()
            guard i < bytes.count else { throw JSONError("unexpected end of input in an object", at: i) }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(members) }
            throw JSONError("expected ',' or '}'", at: i)
        }
    }

    private mutating func array() throws -> JSONValue {
        try enter()
        defer { depth -= 1 }
        i += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
        while true {
            skipWhitespace()
            items.append(try value())
            skipWhitespace()
            guard i < bytes.count else { throw JSONError("unexpected end of input in an array", at: i) }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            throw JSONError("expected ',' or ']'", at: i)
        }
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= bytes.count else { throw JSONError("truncated \\u escape", at: i) }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[i]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw JSONError("invalid \\u escape", at: i)
            }
            v = v << 4 | d
            i += 1
        }
        return v
    }

    private mutating func string() throws -> String {
        let start = i
        i += 1
        var out = [UInt8]()
        var runStart = i
        while true {
            guard i < bytes.count else { throw JSONError("unterminated string", at: start) }
            let c = bytes[i]
            if c == UInt8(ascii: "\"") {
                out.append(contentsOf: bytes[runStart..<i])
                i += 1
                break
            }
            if c < 0x20 { throw JSONError("control character in a string", at: i) }
            if c == UInt8(ascii: "\\") {
                out.append(contentsOf: bytes[runStart..<i])
                i += 1
                guard i < bytes.count else { throw JSONError("unterminated escape", at: i) }
                let e = bytes[i]
                i += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try hex4()
                    if (0xD800..<0xDC00).contains(scalar) {
                        guard i + 6 <= bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") else {
                            throw JSONError("unpaired surrogate", at: i)
                        }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw JSONError("unpaired surrogate", at: i) }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(scalar) {
                        throw JSONError("unpaired surrogate", at: i)
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw JSONError("invalid code point", at: i) }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw JSONError("invalid escape", at: i - 1)
                }
                runStart = i
                continue
            }
            i += 1
        }
        guard let s = String(validating: out, as: UTF8.self) else { throw JSONError("string is not valid UTF-8", at: start) }
        return s
    }

    private mutating func number() throws -> JSONValue {
        let start = i
        var isInteger = true
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        func digits() -> Int {
            let s = i
            while i < bytes.count, bytes[i] >= UInt8(ascii: "0"), bytes[i] <= UInt8(ascii: "9") { i += 1 }
            return i - s
        }
        guard i < bytes.count else { throw JSONError("invalid number", at: start) }
        if bytes[i] == UInt8(ascii: "0") {
            i += 1
        } else if digits() == 0 {
            throw JSONError("invalid number", at: start)
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            if digits() == 0 { throw JSONError("invalid number", at: start) }
        }
        if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
            if digits() == 0 { throw JSONError("invalid number", at: start) }
        }
        let text = String(decoding: bytes[start..<i], as: UTF8.self)
        if isInteger, let v = Int(text) { return .int(v) }
        guard let d = Double(text) else { throw JSONError("invalid number", at: start) }
        return .double(d)
    }
}

/// Writes JSON deterministically: members in the given order, shortest round-trip doubles,
/// non-finite doubles as `null`.
public enum JSONWriter {
    /// Serializes `value`. With `pretty`, two-space indentation and a newline at the end.
    public static func string(_ value: JSONValue, pretty: Bool = true) -> String {
        var out = ""
        write(value, into: &out, indent: pretty ? 0 : -1)
        if pretty { out += "\n" }
        return out
    }

    /// Serializes `value` to UTF-8 bytes.
    public static func bytes(_ value: JSONValue, pretty: Bool = true) -> [UInt8] {
        Array(string(value, pretty: pretty).utf8)
    }

    /// A JSON string literal for `s`.
    public static func quote(_ s: String) -> String {
        // Most names and values are printable ASCII without quotes or backslashes: copy them whole.
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) { return "\"" + s + "\"" }
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                // Control characters: C0 (which JSON requires escaping), and DEL, C1 and the
                // bidirectional overrides (which it allows raw), so that JSON printed on a
                // terminal can neither drive it nor reorder what it shows.
                if TerminalText.isUnsafe(u) {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }

    /// Formats a double as JSON: shortest round-trip digits, `null` when not finite.
    public static func number(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) + ".0" }
        return d.description
    }

    private static func write(_ v: JSONValue, into out: inout String, indent: Int) {
        let pretty = indent >= 0
        let pad = pretty ? String(repeating: "  ", count: indent + 1) : ""
        let closePad = pretty ? String(repeating: "  ", count: indent) : ""
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d): out += number(d)
        case .string(let s): out += quote(s)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            // Short arrays of scalars stay on one line (shapes, small lists).
            let scalars = items.allSatisfy {
                switch $0 { case .array, .object: return false; default: return true }
            }
            if !pretty || (scalars && items.count <= 16) {
                out += "["
                for (k, item) in items.enumerated() {
                    if k > 0 { out += pretty ? ", " : "," }
                    write(item, into: &out, indent: -1)
                }
                out += "]"
                return
            }
            out += "[\n"
            for (k, item) in items.enumerated() {
                out += pad
                write(item, into: &out, indent: indent + 1)
                out += k + 1 < items.count ? ",\n" : "\n"
            }
            out += closePad + "]"
        case .object(let members):
            if members.isEmpty { out += "{}"; return }
            out += pretty ? "{\n" : "{"
            for (k, (name, item)) in members.enumerated() {
                out += pad + quote(name) + (pretty ? ": " : ":")
                write(item, into: &out, indent: pretty ? indent + 1 : -1)
                if k + 1 < members.count { out += pretty ? ",\n" : "," } else if pretty { out += "\n" }
            }
            out += closePad + "}"
        }
    }
}

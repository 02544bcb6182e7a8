// Checkpoint key renaming as data: one rule table per naming scheme, one `remap` function.
//
// A pattern is a dotted name whose segments may be literals, `{i}`/`{j}`/`{k}` (an integer
// segment, captured), or a final `{*}` (the rest of the name, captured). A template uses the
// same placeholders; `{rev:k}` writes `levels - 1 - k` (for LDM's reversed decoder levels).

/// What a rule does to the tensor besides renaming it.
public enum NameTransform: String, Sendable, Codable {
    /// Bytes and shape unchanged.
    case none
    /// `[C, C, 1, 1]` (or `[C, C, 1]`) becomes `[C, C]`; same bytes.
    case squeezeTo2D
}

/// One renaming rule.
public struct NameRule: Sendable {
    public let pattern: [String]
    public let template: String
    public let transform: NameTransform

    public init(_ pattern: String, _ template: String, _ transform: NameTransform = .none) {
        self.pattern = pattern.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        self.template = template
        self.transform = transform
    }

    /// Captured placeholders when `name` matches, else `nil`.
    public func match(_ name: String) -> [String: String]? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var captures: [String: String] = [:]
        var k = 0
        for (p, seg) in pattern.enumerated() {
            if seg == "{*}" {
                guard p == pattern.count - 1, k < parts.count else { return nil }
                captures["*"] = parts[k...].joined(separator: ".")
                return captures
            }
            guard k < parts.count else { return nil }
            if seg.hasPrefix("{") && seg.hasSuffix("}") {
                let key = String(seg.dropFirst().dropLast())
                guard let v = Int(parts[k]), v >= 0, String(v) == parts[k] else { return nil }
                captures[key] = parts[k]
            } else if seg != parts[k] {
                return nil
            }
            k += 1
        }
        return k == parts.count ? captures : nil
    }

    /// Fills the template. `levels` is used by `{rev:x}`.
    public func apply(_ captures: [String: String], levels: Int) -> String {
        var out = ""
        var rest = Substring(template)
        while let open = rest.firstIndex(of: "{") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "}") else { break }
            let key = String(rest[rest.index(after: open)..<close])
            if key.hasPrefix("rev:"), let v = Int(captures[String(key.dropFirst(4))] ?? "") {
                out += String(levels - 1 - v)
            } else {
                out += captures[key] ?? ""
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}

/// An ordered rule table: the first matching rule wins; unmatched names are kept as they are.
public struct NameRuleTable: Sendable {
    public let rules: [NameRule]
    public init(_ rules: [NameRule]) { self.rules = rules }

    /// The canonical name and transform for `name`.
    public func remap(_ name: String, levels: Int = 0) -> (name: String, transform: NameTransform) {
        for r in rules {
            if let c = r.match(name) { return (r.apply(c, levels: levels), r.transform) }
        }
        return (name, .none)
    }
}

/// Glob matching for `--keep` patterns: `*` matches any run of characters, `?` one character.
public func globMatch(_ pattern: String, _ text: String) -> Bool {
    let p = Array(pattern.utf8), t = Array(text.utf8)
    var pi = 0, ti = 0, star = -1, mark = 0
    while ti < t.count {
        if pi < p.count && (p[pi] == UInt8(ascii: "?") || p[pi] == t[ti]) {
            pi += 1; ti += 1
        } else if pi < p.count && p[pi] == UInt8(ascii: "*") {
            star = pi; mark = ti; pi += 1
        } else if star >= 0 {
            pi = star + 1; mark += 1; ti = mark
        } else {
            return false
        }
    }
    while pi < p.count && p[pi] == UInt8(ascii: "*") { pi += 1 }
    return pi == p.count
}

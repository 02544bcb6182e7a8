// Text from files, made safe to print. Every string read from a checkpoint (tensor names, object
// values, metadata, the names of refused globals, zip member names, records) passes through here
// before it reaches a terminal: a file must not be able to drive the terminal (ESC sequences
// retitle it, clear it or draw a fake "all checks passed"), move the cursor back over a line (CR),
// reorder what is shown (bidirectional overrides), or split one line into several (LF).

/// Escaping and eliding of untrusted text for terminals.
public enum TerminalText {
    /// Whether `u` must not reach a terminal raw: the C0 controls (TAB, LF, CR and ESC among them),
    /// DEL, the C1 controls U+0080–U+009F (some terminals obey them as 8-bit CSI and OSC), the line
    /// and paragraph separators U+2028/U+2029, and the Unicode bidirectional formatting characters
    /// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which reorder the text around them.
    @inlinable
    public static func isUnsafe(_ u: Unicode.Scalar) -> Bool {
        let v = u.value
        if v < 0x20 || (v >= 0x7F && v <= 0x9F) { return true }
        if v < 0x61C { return false }
        return v == 0x61C || v == 0x200E || v == 0x200F || (v >= 0x2028 && v <= 0x202E) || (v >= 0x2066 && v <= 0x2069)
    }

    /// `s` with every unsafe scalar (see `isUnsafe`) written as a visible escape: `\t`, `\n`, `\r`,
    /// `\xNN` below U+0100, `\u{NNNN}` above. With `keepingNewlines`, LF stays a line break (for
    /// whole outputs whose lines DiTKit itself laid out). Returns `s` itself when nothing is unsafe.
    public static func escaped(_ s: String, keepingNewlines: Bool = false) -> String {
        if s.utf8.allSatisfy({ ($0 >= 0x20 && $0 < 0x7F) || (keepingNewlines && $0 == 0x0A) }) { return s }
        guard s.unicodeScalars.contains(where: { isUnsafe($0) && !(keepingNewlines && $0 == "\n") }) else { return s }
        var out = String.UnicodeScalarView()
        for u in s.unicodeScalars {
            guard isUnsafe(u), !(keepingNewlines && u == "\n") else { out.append(u); continue }
            let escape: String
            switch u {
            case "\t": escape = "\\t"
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            default:
                let hex = String(u.value, radix: 16)
                escape = u.value < 0x100 ? "\\x" + (hex.count < 2 ? "0" : "") + hex : "\\u{" + hex + "}"
            }
            out.append(contentsOf: escape.unicodeScalars)
        }
        return String(out)
    }

    /// `s` escaped and, when longer than `width` characters, cut in the middle with `…` so that
    /// both ends stay visible (`blocks.0.attn…qkv.weight`).
    public static func elided(_ s: String, width: Int) -> String {
        let e = escaped(s)
        guard e.utf8.count > width, e.count > width, width >= 3 else { return e }
        let tail = (width - 1) / 2
        let head = width - 1 - tail
        return String(e.prefix(head)) + "…" + String(e.suffix(tail))
    }

    /// The longest file-derived string an error message quotes, in characters.
    public static let quoteWidth = 200

    /// `s` for an error message: escaped, elided to `quoteWidth` characters, in single quotes.
    public static func quoted(_ s: String) -> String {
        "'" + elided(s, width: quoteWidth) + "'"
    }
}

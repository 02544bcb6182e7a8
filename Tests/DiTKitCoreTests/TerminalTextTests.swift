// Escaping text from files before it reaches a terminal (issue 18).
import Testing
import DiTKitCore

@Suite struct TerminalTextTests {
    let hostile = "\u{1B}]0;pwned\u{07}\u{1B}[2J\r\nall checks passed\u{1B}[0m\t\u{7F}\u{9B}31m\u{202E}gpj.exe\u{2066}"

    @Test func everyControlCharacterIsEscapedVisibly() {
        let e = TerminalText.escaped(hostile)
        #expect(e == "\\x1b]0;pwned\\x07\\x1b[2J\\r\\nall checks passed\\x1b[0m\\t\\x7f\\x9b31m\\u{202e}gpj.exe\\u{2066}")
        #expect(!e.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x202E })
        // Ordinary text, including non-ASCII letters, is returned as is.
        #expect(TerminalText.escaped("blocks.0.attn.qkv.weight") == "blocks.0.attn.qkv.weight")
        #expect(TerminalText.escaped("modèle · 模型 😀") == "modèle · 模型 😀")
    }

    @Test func newlinesCanBeKeptForWholeOutputs() {
        #expect(TerminalText.escaped("a\nb\u{1B}c\n", keepingNewlines: true) == "a\nb\\x1bc\n")
        #expect(TerminalText.escaped("a\nb", keepingNewlines: false) == "a\\nb")
    }

    @Test func longTextIsElidedInTheMiddle() {
        let name = "model.diffusion_model.input_blocks.11.1.transformer_blocks.0.attn1.to_q.weight"
        let e = TerminalText.elided(name, width: 21)
        #expect(e.count == 21)
        #expect(e == "model.diff…o_q.weight")
        #expect(TerminalText.elided("short", width: 21) == "short")
        let q = TerminalText.quoted(String(repeating: "x", count: 10_000) + "\u{1B}")
        #expect(q.count == TerminalText.quoteWidth + 2 && q.hasPrefix("'x") && q.hasSuffix("\\x1b'"))
    }

    @Test func jsonEscapesWhatATerminalWouldObeyAndStillRoundTrips() throws {
        let text = JSONWriter.string(.object([(hostile, .string(hostile))]), pretty: false)
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || $0.value == 0x202E })
        #expect(text.contains("\\u001b") && text.contains("\\u009b") && text.contains("\\u202e"))
        let back = try JSONReader.parse(text)
        #expect(back.objectValue?.first?.0 == hostile)
        #expect(back[hostile]?.stringValue == hostile)
    }

    @Test func uniqueStringsFindsDuplicatesAmongMany() {
        var u = UniqueStrings()
        var fresh = 0
        for k in 0..<50_000 where u.insert("layer.\(k).weight") { fresh += 1 }
        #expect(fresh == 50_000)
        let again = u.insert("layer.123.weight"), other = u.insert("layer.123.bias")
        #expect(!again && other)
        #expect(u.count == 50_001)
    }
}

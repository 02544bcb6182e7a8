// The block-type workflow from the command line: convert to uniform types and by a fidelity budget,
// verify several conversions against their source into one size / SQNR trade-off report, and the
// exit status of a budget that cannot be met.
import Testing
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import DiTKitCore

@Suite struct BlockCommandTests {
    @Test func tradeOffReportDrawsEveryConversion() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let source = Tool.fixture("flux/dev_bfl_fp8.safetensors")
        var bundles: [String] = []
        for t in ["f16", "q8_0", "q5_1", "q4_0"] {
            let b = dir + "/\(t).ditkit"
            #expect(try Tool.run(["convert", source, "-o", b, "--dtype", t]).status == 0)
            bundles.append(b)
        }
        let auto = try Tool.run(["convert", source, "-o", dir + "/auto.ditkit", "--dtype", "auto", "--min-sqnr", "50", "--json"])
        #expect(auto.status == 0, "\(auto.stderr)")
        #expect(try JSONReader.parse(auto.stdout).arrayValue?.first?["dtype"]?.stringValue == "auto")
        bundles.append(dir + "/auto.ditkit")
        let r = try Tool.run(["verify"] + bundles + ["--against", source, "--report", dir + "/trade.html"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("5 of 5 passed") && r.stdout.contains("report: " + dir + "/trade.html"))
        let html = try FileSystem.readFile(dir + "/trade.html")
        let text = String(decoding: html, as: UTF8.self)
        let parser = XMLParser(data: Data(html))
        #expect(parser.parse(), "well-formed")
        #expect(!text.contains("<script"))
        #expect(text.components(separatedBy: "class=\"dot\"").count - 1 == 5)
        #expect(text.components(separatedBy: "<tr class=\"point\">").count - 1 == 5)
        for label in ["f16", "q8_0", "q5_1", "q4_0", "auto 50 dB"] { #expect(text.contains(">\(label)<"), "\(label)") }
        #expect(text.contains("<rect class=\"dot\""), "auto is marked apart")
        // The report is DiTKit's: --force may replace it, another file is never touched.
        try FileSystem.writeFile(dir + "/mine.html", Array("<html/>".utf8))
        let taken = try Tool.run(["verify"] + bundles + ["--against", source, "--report", dir + "/mine.html", "--force"])
        #expect(taken.status == 64)
    }

    @Test func anUnmeetableSizeBudgetExitsOneWithoutOutput() throws {
        let dir = try Tool.temporaryDirectory()
        defer { FileSystem.removeTree(dir) }
        let r = try Tool.run(["convert", Tool.fixture("flux/dev_bfl_fp8.safetensors"), "-o", dir + "/a.ditkit", "--dtype", "auto",
                              "--min-sqnr", "30", "--max-size", "1000"])
        #expect(r.status == 1, "\(r.stderr)")
        #expect(r.stderr.contains("fits in 1000 bytes") && r.stderr.split(separator: "\n").count == 1, "\(r.stderr)")
        #expect(FileSystem.listDirectory(dir).isEmpty)
    }
}

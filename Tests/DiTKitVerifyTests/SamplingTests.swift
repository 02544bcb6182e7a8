// The sampler against the reference of the official loop, PNG output, and the HTML report.
import Testing
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitNumerics
import DiTKitConvert
@testable import DiTKitVerify

@Suite struct SamplingTests {
    @Test func respacingMatchesTheOfficialSpaceTimesteps() throws {
        let want = try JSONReader.parse(try FileSystem.readFile(Fixtures.path("sample/respacing.json")))
        for (spec, steps) in want.objectValue ?? [] {
            #expect(try GaussianDiffusion.spaceTimesteps(1000, spec) == steps.arrayValue?.compactMap(\.intValue), "\(spec)")
        }
        #expect(throws: DiffusionError.self) { try GaussianDiffusion.spaceTimesteps(1000, "ddim999") }
        #expect(throws: DiffusionError.self) { try GaussianDiffusion.spaceTimesteps(1000, "600,600") }
        let d = try GaussianDiffusion(respacing: "250")
        #expect(d.steps == 250 && d.timestepMap.first == 0 && d.timestepMap.last == 999)
        #expect(GaussianDiffusion.linearBetas(1000).first == 1e-4 && GaussianDiffusion.linearBetas(1000).last == 0.02)
    }

    func reference() throws -> (HDF5File, Tensor, [Int]) {
        let f = try HDF5File.open(Fixtures.path("sample/ddim_reference.h5"))
        let (s, v) = try f.readFloats("/noise")
        return (f, Tensor(shape: s, data: v), try f.readInt64("/classes").values.map { Int($0) })
    }

    // Tolerance: rel L2 <= 1e-4 on the final latents. Each forward agrees with PyTorch to ~1e-6;
    // ten guided DDIM steps (scale 4) amplify that by a few hundred at most.
    @Test func guidedDDIMMatchesTheReferenceLoop() throws {
        let (f, noise, classes) = try reference()
        let m = try LoadedModel.open(Fixtures.path("verify/dit_verify.pt"))
        let vae = try LoadedModel.open(Fixtures.path("verify/vae_verify/diffusion_pytorch_model.safetensors"))
        var o = SamplingOptions()
        o.steps = "ddim10"
        o.ddim = true
        o.cfgScale = 4
        let r = try Sampling.run(dit: m, vae: vae, classes: classes, options: o, noise: noise)
        let want = try f.readFloats("/latents")
        let cmp = LayerComparison.compare("latents", r.latents.data, want.values, shape: r.latents.shape, threshold: 1e-4)
        #expect(cmp.passed, "\(cmp)")
        // Decoded pixels: torchvision's rounding of the PyTorch decode; at most one level apart.
        let pixels = try f.readInt64("/pixels")
        #expect(pixels.shape == [2, 64, 64, 3])
        var off = 0, maxDiff = 0
        for n in 0..<2 {
            for (k, p) in r.images[n].pixels.enumerated() {
                let d = abs(Int(p) - Int(pixels.values[n * 64 * 64 * 3 + k]))
                maxDiff = max(maxDiff, d)
                if d != 0 { off += 1 }
            }
        }
        #expect(maxDiff <= 1)
        #expect(off < 2 * 64 * 64 * 3 / 100, "\(off) pixels differ by one level")
    }

    @Test func unguidedDDIMMatchesToo() throws {
        let (f, noise, classes) = try reference()
        let m = try LoadedModel.open(Fixtures.path("verify/dit_verify.pt"))
        var o = SamplingOptions()
        o.steps = "ddim10"
        o.ddim = true
        o.cfgScale = 1
        let r = try Sampling.run(dit: m, vae: nil, classes: classes, options: o, noise: noise)
        let want = try f.readFloats("/latents_unguided")
        #expect(LayerComparison.compare("latents", r.latents.data, want.values, shape: r.latents.shape, threshold: 1e-4).passed)
        #expect(r.images.isEmpty)
    }

    @Test func ddpmIsReproducibleFromTheSeed() throws {
        let m = try LoadedModel.open(Fixtures.path("verify/dit_verify.pt"))
        var o = SamplingOptions()
        o.steps = "10"
        let a = try Sampling.run(dit: m, vae: nil, classes: [1, 2], options: o, noise: nil)
        let b = try Sampling.run(dit: m, vae: nil, classes: [1, 2], options: o, noise: nil)
        #expect(a.latents == b.latents)
        o.seed = 1
        let c = try Sampling.run(dit: m, vae: nil, classes: [1, 2], options: o, noise: nil)
        #expect(a.latents != c.latents)
        #expect(a.latents.data.allSatisfy { $0.isFinite })
    }

    @Test func pngRoundTripsThroughLibpng() throws {
        var rng = SeededRandom(seed: 3)
        let data = rng.uniforms(2 * 3 * 5 * 7, -1.2, 1.2)
        let images = (0..<2).map { Image8.fromSignedUnit(data, batchIndex: $0, channels: 3, height: 5, width: 7) }
        let grid = Image8.grid(images, columns: 4, padding: 2)
        #expect(grid.width == 2 * (7 + 2) + 2 && grid.height == 5 + 4)
        let png = try grid.png()
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        #expect(try Image8.decodePNG(png) == grid)
        #expect(try grid.png() == png, "deterministic")
        // The torchvision mapping: -1 -> 0, 1 -> 255, 0 -> 128 (0.5 * 255 + 0.5 = 128.0).
        let probe = Image8.fromSignedUnit([-1, 1, 0, 2], batchIndex: 0, channels: 1, height: 1, width: 4)
        #expect(probe.pixels == [0, 255, 128, 255])
    }
}

/// Collects elements, ids and attributes while parsing the report as XML.
final class ReportScanner: NSObject, XMLParserDelegate {
    var counts: [String: Int] = [:]
    var ids = Set<String>()
    var classes: [String: Int] = [:]
    var images: [String] = []
    var text = ""
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        counts[name, default: 0] += 1
        if let id = attributes["id"] { ids.insert(id) }
        if let c = attributes["class"] { classes[c, default: 0] += 1 }
        if name == "img", let src = attributes["src"] { images.append(src) }
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { text += string }
}

@Suite struct ReportTests {
    @Test func reportHasEverySectionRowAndImage() throws {
        let (m, dir) = try bundle("verify/dit_verify.pt", .int8)
        defer { FileSystem.removeTree(dir) }
        let source = try LoadedModel.open(Fixtures.path("verify/dit_verify.pt"))
        let result = try Verifier.verify(m, against: source)
        var o = SamplingOptions()
        o.steps = "5"
        let vae = try LoadedModel.open(Fixtures.path("verify/vae_verify/diffusion_pytorch_model.safetensors"))
        let cmp = try SampleComparison.run(converted: m, source: source, vae: vae, classes: [3, 7], options: o, profile: result.profile)
        let html = try HTMLReport.render(result, title: "test", bundle: m.container as? NativeBundle, sample: cmp)
        #expect(!html.contains("<script"))
        let scanner = ReportScanner()
        let parser = XMLParser(data: Data(html.utf8))
        parser.delegate = scanner
        #expect(parser.parse(), "the report is well-formed: \(parser.parserError.map { "\($0)" } ?? "")")
        for id in ["verdict", "samples", "chart", "layers", "layer-table", "quantization", "quantization-table", "latent-rel-l2"] {
            #expect(scanner.ids.contains(id), "section \(id)")
        }
        #expect(scanner.classes["layer"] == result.layers.count)
        #expect(scanner.classes["bar"] == result.layers.count)
        let lossy = (m.container as? NativeBundle)?.manifest.tensors.filter { $0.error != nil }.count ?? 0
        #expect(scanner.classes["tensor"] == lossy && lossy == 13)
        #expect(scanner.images.count == 6, "source, converted and difference for two classes")
        for src in scanner.images {
            #expect(src.hasPrefix("data:image/png;base64,"))
            let png = try #require(Data(base64Encoded: String(src.dropFirst("data:image/png;base64,".count))))
            #expect(png.prefix(4) == Data([0x89, 0x50, 0x4E, 0x47]))
        }
        #expect(scanner.text.contains(result.passed && cmp.passed ? "PASSED" : "FAILED"))
        for l in result.layers { #expect(scanner.text.contains(l.name)) }
    }

    @Test func failingReportMarksTheFirstFailingLayer() throws {
        let (m, dir) = try bundle("verify/dit_verify.pt", .f32)
        defer { FileSystem.removeTree(dir) }
        let r = try Verifier.verify(m, reference: Fixtures.path("verify/dit_reference_perturbed_block1.h5"))
        let html = try HTMLReport.render(r, title: "perturbed", bundle: nil, sample: nil)
        #expect(html.contains("FAILED: first failing layer blocks.1.mlp"))
        #expect(html.contains("◀ first failing layer"))
        #expect(html.components(separatedBy: "class=\"layer failed\"").count - 1 == r.layers.filter { !$0.passed }.count)
    }
}

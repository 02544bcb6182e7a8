// Every zoo manifest against the architecture code: counts and shapes computed from the code must
// equal what the manifest states; every published hash is in Checksums/.
import Testing
import DiTKitCore
import DiTKitModels
@testable import DiTKitZoo

let repository: String = {
    var p = #filePath
    for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
    return p
}()

@Suite struct ManifestTests {
    let zoo: Zoo
    init() throws { zoo = try Zoo(directory: repository + "/Manifests") }

    @Test func everyEntryIsPresent() throws {
        let ids = Set(zoo.entries.map(\.id))
        for size in ["s", "b", "l", "xl"] { for p in [2, 4, 8] { #expect(ids.contains("dit-\(size)-\(p)")) } }
        for id in ["dit-xl-2-256x256", "dit-xl-2-512x512", "sd-vae-ft-ema", "sd-vae-ft-mse", "vae-ft-mse-840000-ema-pruned", "vae-ft-ema-560000-ema-pruned"] {
            #expect(ids.contains(id), "\(id)")
        }
    }

    @Test func countsMatchTheArchitectureCode() throws {
        for e in zoo.entries {
            for c in e.counts {
                let size = Int(c.size)
                let config = try #require(e.configuration(imageSize: size), "\(e.id)")
                let shapes = config.tensorShapes()
                #expect(shapes.count == c.tensors, "\(e.id) at \(c.size): tensors")
                #expect(shapes.reduce(0) { $0 + $1.shape.reduce(1, *) } == c.parameters, "\(e.id) at \(c.size): parameters")
            }
        }
    }

    @Test func pixartCountsMatchDiffusersAndTheOriginalCode() throws {
        // tools/make_pixart_fixtures.py counted diffusers' PixArtTransformer2DModel and the original
        // PixArt / PixArtMS classes for every published configuration.
        let counts = try JSONReader.parse(try FileSystem.readFile(repository + "/Tests/Fixtures/pixart/published_counts.json"))
        for (name, _, _, _, tokens) in PixArtConfiguration.published {
            let d = try #require(PixArtConfiguration.named(name + " (diffusers)"))
            let o = try #require(PixArtConfiguration.named(name))
            #expect(d.tensorShapes().count == counts[name]?["diffusers"]?["tensors"]?.intValue, "\(name)")
            #expect(d.parameterCount == counts[name]?["diffusers"]?["parameters"]?.intValue, "\(name)")
            // The original state dict holds the same parameters, fused, plus pos_embed and the null caption.
            let grid = o.sampleSize / o.patchSize
            #expect(o.parameterCount + grid * grid * o.innerDim == counts[name]?["original"]?["parameters"]?.intValue, "\(name)")
            #expect(o.parameterCount - d.parameterCount == tokens * 4096)
            // Without the null caption, α and Σ at 512 are the same network: either published name will do.
            #expect(o.variant == name && d.variant != "PixArt-custom")
        }
        #expect(try zoo.entry("pixart-sigma-xl-2-2k-ms").pairsWith == ["sdxl-vae"])
        #expect(try zoo.entry("sdxl-vae").configuration()?.as(VAEConfiguration.self)?.scalingFactor == 0.13025)
    }

    @Test func sd3CountsMatchDiffusersAndTheirVAE() throws {
        // tools/make_sd3_fixtures.py counted diffusers' SD3Transformer2DModel and AutoencoderKL (SD3's
        // VAE) for the published configurations; Stability's MMDiTX holds the same parameters.
        let counts = try JSONReader.parse(try FileSystem.readFile(repository + "/Tests/Fixtures/sd3/published_counts.json"))
        for (id, key) in [("sd3-medium", "SD3-medium"), ("sd3-medium-diffusers", "SD3-medium"), ("sd3-5-large", "SD3.5-large"),
                          ("sd3-5-large-turbo-diffusers", "SD3.5-large"), ("sd3-5-medium", "SD3.5-medium")] {
            let e = try zoo.entry(id)
            #expect(e.counts.first?.parameters == counts[key]?["diffusers"]?["parameters"]?.intValue, "\(id)")
            #expect(e.counts.first?.parameters == counts[key]?["original"]?["parameters"]?.intValue, "\(id)")
            #expect(e.counts.first?.tensors == counts[key]?["diffusers"]?["tensors"]?.intValue, "\(id)")
            #expect(e.pairsWith == ["sd3-vae"])
        }
        let vae = try #require(try zoo.entry("sd3-vae").configuration()?.as(VAEConfiguration.self))
        #expect(vae.latentChannels == 16 && !vae.useQuantConv && vae.scalingFactor == 1.5305 && vae.shiftFactor == 0.0609)
        #expect(try zoo.entry("sd3-vae").scalingFactor == 1.5305)
        // Turbo is large's network under another name.
        #expect(try zoo.entry("sd3-5-large-turbo").configuration() == (try zoo.entry("sd3-5-large").configuration()))
    }

    @Test func fluxCountsMatchDiffusersAndBFL() throws {
        // tools/make_flux_fixtures.py counted diffusers' FluxTransformer2DModel / AutoencoderKL and BFL's
        // Flux / AutoEncoder classes (meta device) for the releases.
        let counts = try JSONReader.parse(try FileSystem.readFile(repository + "/Tests/Fixtures/flux/published_counts.json"))
        for (id, name) in [("flux-1-dev", "FLUX.1-dev"), ("flux-1-schnell", "FLUX.1-schnell")] {
            for entry in [try zoo.entry(id), try zoo.entry(id + "-diffusers")] {
                let c = try #require(entry.configuration())
                #expect(c.variant == name && entry.counts.first?.tensors == counts[name]?["diffusers"]?["tensors"]?.intValue)
                #expect(entry.counts.first?.parameters == counts[name]?["diffusers"]?["parameters"]?.intValue)
                #expect(entry.pairsWith.contains("flux-vae"))
            }
            // BFL's file holds the same parameters in fewer tensors (fused qkv and linear1).
            let c = try #require(FluxFamily().configuration(named: name, imageSize: nil))
            let original = Set(c.tensorShapes().map { FluxNaming.toOriginal($0.name).name })
            #expect(original.count == counts[name]?["original"]?["tensors"]?.intValue)
            #expect(c.parameterCount == counts[name]?["original"]?["parameters"]?.intValue)
        }
        for id in ["flux-vae", "flux-vae-diffusers"] {
            let e = try zoo.entry(id)
            let v = try #require(e.configuration()?.as(VAEConfiguration.self))
            #expect(v.latentChannels == 16 && v.scalingFactor == 0.3611 && v.shiftFactor == 0.1159 && !v.useQuantConv)
            #expect(e.counts.first?.tensors == counts["flux-vae"]?["original"]?["tensors"]?.intValue)
            #expect(e.counts.first?.parameters == counts["flux-vae"]?["diffusers"]?["parameters"]?.intValue)
        }
        #expect(try zoo.entry("flux-1-dev-diffusers").files.filter { $0.name.hasSuffix(".safetensors") }.count == 3)
    }

    @Test func referenceFiguresHold() throws {
        // ../shared/reference/dit-and-vae.md §1.2 and §4.
        let xl = try zoo.entry("dit-xl-2")
        #expect(xl.counts.first { $0.size == "256" }?.parameters == 675_129_632)
        #expect(xl.counts.first { $0.size == "512" }?.parameters == 676_014_368)
        #expect(xl.counts.first { $0.size == "256" }?.tensors == 292)
        #expect(try zoo.entry("dit-l-2").counts.first { $0.size == "256" }?.parameters == 458_102_816)
        #expect(try zoo.entry("dit-b-2").counts.first { $0.size == "256" }?.parameters == 130_512_416)
        #expect(try zoo.entry("dit-s-2").counts.first { $0.size == "256" }?.parameters == 32_963_360)
        let vae = try zoo.entry("sd-vae-ft-mse")
        #expect(vae.counts[0].tensors == 248 && vae.counts[0].parameters == 83_653_863)
        #expect(vae.scalingFactor == 0.18215)
        #expect(try zoo.entry("dit-xl-2-256x256").metrics["fid50k"]?.doubleValue == 2.27)
        #expect(try zoo.entry("dit-xl-2-512x512").metrics["fid50k"]?.doubleValue == 3.04)
        if let c = vae.configuration()?.as(VAEConfiguration.self) { #expect(c.levels == 4 && c.blockOutChannels == [128, 256, 512, 512]) } else { Issue.record("no VAE") }
    }

    @Test func releasesPairAndPin() throws {
        let checksums = try Checksums.load(directory: repository + "/Checksums")
        for e in zoo.entries where e.kind == "release" {
            #expect(e.primaryFile != nil)
            for p in e.pairsWith { #expect((try? zoo.entry(p)) != nil, "\(e.id) pairs with unknown \(p)") }
            for f in e.files {
                if let sha = f.sha256 {
                    #expect(checksums.contains(ChecksumLine(sha256: sha, path: "\(e.id)/\(f.name)")), "\(e.id)/\(f.name) missing from Checksums/")
                }
                #expect(f.url.hasPrefix("https://"))
            }
        }
        // The official DiT files publish no hash: they are unpinned, fetched by trust on first use.
        #expect(try zoo.entry("dit-xl-2-256x256").primaryFile?.sha256 == nil)
        #expect(try zoo.entry("dit-xl-2-256x256").primaryFile?.url == "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt")
    }

    @Test func strictValidation() throws {
        func refuse(_ text: String) -> String {
            do {
                _ = try ZooEntry(json: try JSONReader.parse(text), path: "/x/bad.json")
                return "accepted"
            } catch { return String(describing: error) }
        }
        #expect(refuse(#"{"id": "bad", "kind": "release", "extra": 1}"#).contains("unknown member 'extra'"))
        #expect(refuse(#"{"id": "other", "kind": "release"}"#).contains("file name must be other.json"))
        #expect(refuse(#"{"id": "bad", "kind": "release", "family": "dit", "title": "t", "description": "d", "architecture": "DiT-XL/2", "counts": {"256": {"tensors": 1, "parameters": 1}}, "license": "x", "files": []}"#)
            .contains("exactly one primary file"))
    }

    @Test func closestArchitectureOfACustomDiT() throws {
        var c = try #require(DiTConfiguration.named("DiT-S/2"))
        c.depth = 10
        let best = try #require(zoo.closestArchitecture(ModelConfiguration(DiTFamily(), c)))
        #expect(best.entry == "dit-s-2")
        #expect(!best.exact)
        #expect(best.differences == ["depth 10 instead of 12"])
        let l4 = try #require(DiTConfiguration.named("DiT-L/4", imageSize: 512))
        let exact = try #require(zoo.closestArchitecture(ModelConfiguration(DiTFamily(), l4)))
        #expect(exact.entry == "dit-l-4" && exact.exact)
    }
}

/// The zoo compiled into DiTKit (BuiltinZoo.swift, generated by tools/embed_zoo.py) is the zoo in the
/// repository, byte for byte, and the last step of the search order.
@Suite struct BuiltinZooTests {
    func files(_ folder: String, suffix: String, skip: Set<String> = []) throws -> [(String, String)] {
        let dir = repository + "/" + folder
        return try FileSystem.listDirectory(dir).filter { $0.hasSuffix(suffix) && !skip.contains($0) }.sorted().map {
            ($0, String(decoding: try FileSystem.readFile(dir + "/" + $0), as: UTF8.self))
        }
    }

    @Test func builtinCopyEqualsTheFiles() throws {
        let manifests = try files("Manifests", suffix: ".json", skip: ["schema.json"])
        #expect(BuiltinZoo.manifests.map(\.name) == manifests.map(\.0), "Manifests/ changed: run make zoo-source")
        for (name, text) in manifests {
            #expect(BuiltinZoo.manifests.first { $0.name == name }?.text == text, "\(name) differs from its compiled-in copy: run make zoo-source")
        }
        let sums = try files("Checksums", suffix: ".SHA256SUMS")
        #expect(BuiltinZoo.checksums.map(\.name) == sums.map(\.0), "Checksums/ changed: run make zoo-source")
        for (name, text) in sums {
            #expect(BuiltinZoo.checksums.first { $0.name == name }?.text == text, "\(name) differs from its compiled-in copy: run make zoo-source")
        }
    }

    @Test func builtinZooReadsLikeTheDirectory() throws {
        let fromFiles = try Zoo(directory: repository + "/Manifests")
        let builtin = try Zoo.builtin()
        #expect(builtin.directory == nil)
        #expect(builtin.entries.map(\.id) == fromFiles.entries.map(\.id))
        for (a, b) in zip(builtin.entries, fromFiles.entries) {
            let same = a.json == b.json
            #expect(same, "\(a.id): the compiled-in entry differs from Manifests/\(b.id).json")
        }
        #expect(builtin.entries.first?.manifestPath.hasPrefix(Zoo.builtinOrigin + "/Manifests/") == true)
        #expect(try builtin.publishedChecksums(directory: nil) == Checksums.load(directory: repository + "/Checksums"))
        #expect(try fromFiles.publishedChecksums(directory: nil) == Checksums.load(directory: repository + "/Checksums"))
    }

    @Test func explicitDirectoryIsUsedAsGivenAndNeverFallsBack() throws {
        #expect(try Zoo.locate(repository + "/Manifests") == repository + "/Manifests")
        #expect(throws: ZooError.self) { try Zoo.open(manifests: "/nonexistent/Manifests") }
    }
}

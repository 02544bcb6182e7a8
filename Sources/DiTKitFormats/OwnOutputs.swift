// How DiTKit recognises its own outputs, so that `--force` replaces only what DiTKit wrote
// (AtomicOutput asks an `OutputKind` before touching an existing path):
//   bundle       a directory holding only manifest.json, manifest.json.sha256 and weights.bin,
//                whose manifest says "format": "ditkit"
//   pack         a zstd stream whose tar starts with a bundle directory and its manifest.json
//   safetensors  a safetensors file whose __metadata__ has ditkit.converter
//   gguf         a GGUF file whose metadata has ditkit.converter
//   hdf5         an HDF5 file whose root attribute `format` names the DiTKit kind
//   png          a PNG with DiTKit's `Software` text chunk
import DiTKitCore

extension OutputKind {
    /// A DiTKit bundle directory.
    public static let bundle = OutputKind("a DiTKit bundle", directory: true) { path in
        if let extra = OutputKind.unexpectedEntries(path, allowed: Set(BundlePack.members)) {
            return extra + " (a bundle holds only \(BundlePack.members.joined(separator: ", ")))"
        }
        guard let bytes = try? FileSystem.readFile(path + "/" + BundleManifest.manifestFile), bytes.count <= 256 << 20,
              let json = try? JSONReader.parse(bytes), json["format"]?.stringValue == BundleManifest.formatName else {
            return "a directory without a DiTKit manifest"
        }
        return nil
    }

    /// A pack written by `ditkit pack`.
    public static let pack = OutputKind("a DiTKit pack", directory: false) { path in
        guard let file = try? MappedFile(path: path), BundlePack.isPack(file.bytes) else { return "a file that is not a DiTKit pack" }
        return nil
    }

    /// A safetensors file written by `ditkit export` (alone or inside a diffusers folder).
    public static let safetensorsExport = OutputKind("a DiTKit safetensors export", directory: false) { path in
        guard let c = try? Checkpoint.open(path), c.format == .safetensors else { return "a file that is not safetensors" }
        guard c.metadata.contains(where: { $0.key == "ditkit.converter" }) else { return "a safetensors file DiTKit did not write" }
        return nil
    }

    /// A GGUF file written by `ditkit export --to gguf`.
    public static let ggufExport = OutputKind("a DiTKit GGUF export", directory: false) { path in
        guard let c = try? Checkpoint.open(path), c.format == .gguf else { return "a file that is not GGUF" }
        guard c.metadata.contains(where: { $0.key == "ditkit.converter" }) else { return "a GGUF file DiTKit did not write" }
        return nil
    }

    /// An HDF5 file DiTKit wrote with root attribute `format` = `format`.
    public static func hdf5(format: String, _ description: String) -> OutputKind {
        OutputKind(description, directory: false) { path in
            let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]
            guard let file = try? MappedFile(path: path), file.bytes.count >= 8, file.bytes.prefix(8).elementsEqual(signature) else {
                return "a file that is not HDF5"
            }
            guard (try? HDF5Snapshot.readAttributes(path))?["format"] == format else { return "an HDF5 file that is not \(description)" }
            return nil
        }
    }

    /// A PNG written by DiTKit (`ditkit sample`).
    public static let png = OutputKind("a PNG written by DiTKit", directory: false) { path in
        guard let file = try? MappedFile(path: path), PNGChunks.isDiTKitPNG(file.bytes) else { return "a file that is not a PNG written by DiTKit" }
        return nil
    }
}

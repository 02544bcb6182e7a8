// `ditkit export --to hdf5`: one dataset per tensor (with dtype, shape and provenance attributes)
// and the manifest as a root attribute.
import DiTKitCore
import DiTKitFormats

extension OutputKind {
    /// A file written by `ditkit export --to hdf5`.
    public static let hdf5Export = hdf5(format: HDF5Export.format, "a DiTKit HDF5 export")
}

public enum HDF5Export {
    /// The root attribute `format` of every HDF5 export.
    public static let format = "ditkit-hdf5"

    /// F32 tensors as float32 datasets, F16 as IEEE half datasets (numpy float16), BF16 widened
    /// exactly to float32 (HDF5 has no bfloat16), I8 as int8 with a float32 `<name>.scale` dataset,
    /// ggml block types (Q8_0 ... Q6_K) dequantized to float32.
    /// Each dataset has attributes `stored_dtype` and the manifest's checksum of the stored bytes
    /// (`xxh3_128`, or `sha256` for a bundle of format version 1 or 2); the root has
    /// `manifest` (the manifest JSON) and `format` (`ditkit-hdf5`).
    public static func export(_ bundle: NativeBundle, to output: String, force: Bool = false) throws -> ExportSummary {
        var count = 0
        try AtomicOutput.produce(output, kind: .hdf5Export, force: force) { temporary in
            let f = try HDF5File.create(temporary)
            try f.setAttribute("format", format)
            try f.setAttribute("manifest", String(decoding: bundle.manifestBytes, as: UTF8.self))
            try f.setAttribute("variant", bundle.manifest.variant)
            if let sha = bundle.manifest.provenance["source"]?["sha256"]?.stringValue { try f.setAttribute("source_sha256", sha) }
            for t in bundle.manifest.tensors {
                guard let view = bundle.view(t.name) else { continue }
                let path = "/" + t.name
                switch view.dtype {
                case .bf16, _ where view.dtype.block != nil:
                    let floats = view.floats()
                    try f.writeFloats(path, shape: view.shape, floats)
                case .f16:
                    try withExtendedLifetime(view.bytes) { try f.writeHalf(path, shape: view.shape, view.bytes.buffer) }
                default:
                    try withExtendedLifetime(view.bytes) { try f.writeRaw(path, shape: view.shape, dtype: view.dtype, view.bytes.buffer) }
                }
                try f.setAttribute("stored_dtype", view.dtype.name, on: path)
                try f.setAttribute(bundle.manifest.checksum.rawValue, t.stored.checksum, on: path)
                count += 1
                if let s = view.scale {
                    try withExtendedLifetime(s) { try f.writeRaw(path + ".scale", shape: [view.shape[0]], dtype: .f32, s.buffer) }
                    try f.setAttribute("stored_dtype", "F32", on: path + ".scale")
                    count += 1
                }
                bundle.releaseTensor(t.name)
            }
            try f.flush()
        }
        return ExportSummary(path: output, format: "hdf5", tensors: count, bytes: FileSystem.fileSize(output) ?? 0)
    }
}

// Randomly initialised models of every family, wide enough (256) for the K-quants' 256-value rows,
// made at test time: the committed fixtures are 8 to 128 wide, so their matrices take the 32-value
// fallbacks. A fixture's manifest configuration is widened, its tensors filled from DiTKit's seeded
// generator (N(0, 1/fan_in) for matrices, norms near 1, small biases), written as a bundle and exported
// as a diffusers folder (the export diffusers' own from_pretrained loads: ExportCommandTests), which
// `convert` then reads like any other source. Random weights say little about trained ones: these
// models test the policy, the quantizers and the forward pass at widths the fixtures cannot reach.
import Foundation
import DiTKitCore
import DiTKitFormats
import DiTKitModels
import DiTKitConvert
import DiTKitExport

enum WideModels {
    /// family -> (fixture, heads hint, config members to change).
    static let recipes: [String: (source: String, heads: Int?, changes: [(String, JSONValue)])] = [
        "dit": ("verify/dit_verify.pt", 2, [("hidden_size", .int(256)), ("num_heads", .int(4)), ("head_dim", .int(64))]),
        "vae": ("verify/vae_verify/diffusion_pytorch_model.safetensors", nil,
                [("block_out_channels", .array([.int(32), .int(256)])), ("layers_per_block", .int(1))]),
        "pixart": ("pixart/sigma/transformer/diffusion_pytorch_model.safetensors", nil,
                   [("num_attention_heads", .int(4)), ("attention_head_dim", .int(64)), ("cross_attention_dim", .int(256)), ("caption_channels", .int(256))]),
        "sd3": ("sd3/mmdit/transformer/diffusion_pytorch_model.safetensors", nil,
                [("num_attention_heads", .int(4)), ("attention_head_dim", .int(64)), ("joint_attention_dim", .int(256)),
                 ("caption_projection_dim", .int(256)), ("pooled_projection_dim", .int(256)), ("pos_embed_max_size", .int(16)),
                 ("sample_size", .int(16)), ("image_size", .int(128))]),
        "flux": ("flux/dev", nil, [("num_attention_heads", .int(2)), ("attention_head_dim", .int(128)), ("joint_attention_dim", .int(256)),
                                   ("pooled_projection_dim", .int(256)), ("axes_dims_rope", .array([.int(16), .int(56), .int(56)]))]),
    ]

    /// Writes the wide `family` model as a diffusers folder in `dir` and returns its path.
    static func folder(_ family: String, in dir: String, seed: UInt64 = 14) throws -> String {
        guard let r = recipes[family] else { throw CheckpointError.inconsistent("no wide \(family)") }
        let template = try convertFixture(r.source, heads: r.heads, .f32, into: dir, name: "\(family)-template.ditkit")
        guard case .object(var members) = template.manifest.config else { throw CheckpointError.inconsistent("config") }
        for (k, v) in r.changes {
            if let i = members.firstIndex(where: { $0.0 == k }) { members[i].1 = v } else { members.append((k, v)) }
        }
        let config = try ModelConfiguration(family: family, json: .object(members))
        let shapes = config.tensorShapes()
        var rng = SeededRandom(seed: seed)
        var values: [[Float]] = []
        for (name, shape) in shapes {
            let n = shape.reduce(1, *)
            var v = rng.normals(n)
            if shape.count >= 2 {
                let scale = 1 / Float(shape.dropFirst().reduce(1, *)).squareRoot()
                for i in v.indices { v[i] *= scale }
            } else {
                let base: Float = name.hasSuffix(".weight") && name.contains("norm") ? 1 : 0
                for i in v.indices { v[i] = base + 0.02 * v[i] }
            }
            values.append(v)
        }
        let path = dir + "/\(family)-wide.ditkit"
        let writer = try BundleWriter(path: path, force: true)
        let (offsets, total) = try writer.layout(values.map { $0.count * 4 })
        var tensors: [BundleTensor] = []
        for ((name, shape), (v, o)) in zip(shapes, zip(values, offsets)) {
            let hash = v.withUnsafeBytes { XXH3Hasher.hex($0) }
            try v.withUnsafeBytes { try writer.write($0, at: o) }
            tensors.append(BundleTensor(name: name, stored: StoredRecord(dtype: .f32, shape: shape, offset: o, bytes: v.count * 4, checksum: hash),
                                        sources: [SourceTensorRecord(name: name, dtype: .f32, shape: shape, checksum: hash)], transform: "copy"))
        }
        let m = template.manifest
        try writer.finish(BundleManifest(alignment: m.alignment, family: family, variant: config.variant, config: config.json, naming: m.naming,
                                         provenance: m.provenance, dtypePolicy: m.dtypePolicy, weightsBytes: total, tensors: tensors))
        let folder = dir + "/\(family)-wide"
        _ = try DiffusersExport.export(try NativeBundle(path: path), to: folder)
        return folder
    }
}

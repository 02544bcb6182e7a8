// SD3 checkpoint names: diffusers' `SD3Transformer2DModel` names are canonical. Stability's layout
// (`MMDiTX` in Stability-AI/sd3.5 mmditx.py: `joint_blocks.N.{x_block, context_block}.…`, saved under
// `model.diffusion_model.` in the release files and ComfyUI checkpoints) maps onto them as diffusers'
// `convert_sd3_transformer_checkpoint_to_diffusers` (loaders/single_file_utils.py) does: fused q|k|v
// rows are split, the two-way adaLN of the last context block and of the final layer store
// [shift, scale] where diffusers' AdaLayerNormContinuous reads [scale, shift] (halves swapped),
// everything else is renamed.

public enum SD3Naming {
    /// Anchors: a tensor every SD3 has in each layout (FLUX's diffusers folders share the first; the
    /// family's plan tells them apart).
    public static let diffusersAnchor = "time_text_embed.text_embedder.linear_1.weight"
    public static let originalAnchor = "joint_blocks.0.context_block.attn.qkv.weight"

    /// The prefix of the transformer in Stability's single files and ComfyUI checkpoints (their VAE
    /// sits under `first_stage_model.`, the text encoders under `text_encoders.`).
    public static let singleFilePrefix = "model.diffusion_model."

    /// One-to-one renames, original <-> canonical (the same pairs serve both directions).
    static let pairs: [(original: String, canonical: String)] = [
        ("pos_embed", "pos_embed.pos_embed"),
        ("x_embedder.proj.{*}", "pos_embed.proj.{*}"),
        ("t_embedder.mlp.0.{*}", "time_text_embed.timestep_embedder.linear_1.{*}"),
        ("t_embedder.mlp.2.{*}", "time_text_embed.timestep_embedder.linear_2.{*}"),
        ("y_embedder.mlp.0.{*}", "time_text_embed.text_embedder.linear_1.{*}"),
        ("y_embedder.mlp.2.{*}", "time_text_embed.text_embedder.linear_2.{*}"),
        ("context_embedder.{*}", "context_embedder.{*}"),
        ("joint_blocks.{i}.x_block.adaLN_modulation.1.{*}", "transformer_blocks.{i}.norm1.linear.{*}"),
        ("joint_blocks.{i}.context_block.adaLN_modulation.1.{*}", "transformer_blocks.{i}.norm1_context.linear.{*}"),
        ("joint_blocks.{i}.x_block.attn.ln_q.{*}", "transformer_blocks.{i}.attn.norm_q.{*}"),
        ("joint_blocks.{i}.x_block.attn.ln_k.{*}", "transformer_blocks.{i}.attn.norm_k.{*}"),
        ("joint_blocks.{i}.x_block.attn.proj.{*}", "transformer_blocks.{i}.attn.to_out.0.{*}"),
        ("joint_blocks.{i}.context_block.attn.proj.{*}", "transformer_blocks.{i}.attn.to_add_out.{*}"),
        ("joint_blocks.{i}.context_block.attn.ln_q.{*}", "transformer_blocks.{i}.attn.norm_added_q.{*}"),
        ("joint_blocks.{i}.context_block.attn.ln_k.{*}", "transformer_blocks.{i}.attn.norm_added_k.{*}"),
        ("joint_blocks.{i}.x_block.attn2.ln_q.{*}", "transformer_blocks.{i}.attn2.norm_q.{*}"),
        ("joint_blocks.{i}.x_block.attn2.ln_k.{*}", "transformer_blocks.{i}.attn2.norm_k.{*}"),
        ("joint_blocks.{i}.x_block.attn2.proj.{*}", "transformer_blocks.{i}.attn2.to_out.0.{*}"),
        ("joint_blocks.{i}.x_block.mlp.fc1.{*}", "transformer_blocks.{i}.ff.net.0.proj.{*}"),
        ("joint_blocks.{i}.x_block.mlp.fc2.{*}", "transformer_blocks.{i}.ff.net.2.{*}"),
        ("joint_blocks.{i}.context_block.mlp.fc1.{*}", "transformer_blocks.{i}.ff_context.net.0.proj.{*}"),
        ("joint_blocks.{i}.context_block.mlp.fc2.{*}", "transformer_blocks.{i}.ff_context.net.2.{*}"),
        ("final_layer.linear.{*}", "proj_out.{*}"),
        ("final_layer.adaLN_modulation.1.{*}", "norm_out.linear.{*}"),
    ]

    public static let fromOriginal = NameRuleTable(pairs.map { NameRule($0.original, $0.canonical) })
    public static let toOriginal = NameRuleTable(pairs.map { NameRule($0.canonical, $0.original) })

    /// Fused original tensors of block `i` and the canonical tensors their rows hold, in order.
    public static func fused(block i: Int, _ suffix: String) -> [(original: String, parts: [String])] {
        let b = "transformer_blocks.\(i)."
        return [
            ("joint_blocks.\(i).x_block.attn.qkv.\(suffix)", ["to_q", "to_k", "to_v"].map { b + "attn.\($0).\(suffix)" }),
            ("joint_blocks.\(i).context_block.attn.qkv.\(suffix)", ["add_q_proj", "add_k_proj", "add_v_proj"].map { b + "attn.\($0).\(suffix)" }),
            ("joint_blocks.\(i).x_block.attn2.qkv.\(suffix)", ["to_q", "to_k", "to_v"].map { b + "attn2.\($0).\(suffix)" }),
        ]
    }

    /// The two-way adaLN tensors stored [shift, scale] in the original layout and [scale, shift] in
    /// diffusers': the final layer's and the last block's context norm.
    public static func swapped(_ c: SD3Configuration) -> Set<String> {
        let last = "transformer_blocks.\(c.numLayers - 1).norm1_context.linear."
        return [last + "weight", last + "bias", "norm_out.linear.weight", "norm_out.linear.bias"]
    }

    /// The original name a canonical tensor is written under (without the single-file prefix), its
    /// slot among the rows of a fused tensor, or its swapped halves.
    public static func toOriginal(_ name: String, _ c: SD3Configuration) -> ExportedTensor {
        let parts = name.split(separator: ".").map(String.init)
        if parts.count == 5, parts[0] == "transformer_blocks", let i = Int(parts[1]), ["attn", "attn2"].contains(parts[2]) {
            for (original, members) in fused(block: i, parts[4]) {
                if let k = members.firstIndex(of: name) { return ExportedTensor(original, slot: k, of: members.count) }
            }
        }
        let mapped = toOriginal.remap(name).name
        return swapped(c).contains(name) ? ExportedTensor(mapped, part: .swappedHalves) : ExportedTensor(mapped)
    }
}

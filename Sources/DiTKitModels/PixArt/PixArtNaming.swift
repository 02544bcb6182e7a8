// PixArt checkpoint names: diffusers' `PixArtTransformer2DModel` names are canonical. The original
// PixArt-alpha / PixArt-sigma layout (`blocks.N.attn.qkv`, `blocks.N.cross_attn.kv_linear`,
// `t_block.1`, `y_embedder.y_proj`, …; PixArt-alpha tools/convert_pixart_alpha_to_diffusers.py)
// maps onto them: fused q|k|v and k|v rows are split, everything else is renamed.

public enum PixArtNaming {
    /// Anchors: the shared adaLN of each layout.
    public static let diffusersAnchor = "adaln_single.linear.weight"
    public static let originalAnchor = "t_block.1.weight"

    /// The null caption DiTKit keeps under a diffusers-style name (diffusers has no slot for it).
    public static let nullCaption = "caption_projection.y_embedding"

    /// One-to-one renames, original <-> canonical (the same pairs serve both directions).
    static let pairs: [(original: String, canonical: String)] = [
        ("x_embedder.proj.{*}", "pos_embed.proj.{*}"),
        ("y_embedder.y_proj.fc1.{*}", "caption_projection.linear_1.{*}"),
        ("y_embedder.y_proj.fc2.{*}", "caption_projection.linear_2.{*}"),
        ("y_embedder.y_embedding", nullCaption),
        ("t_embedder.mlp.0.{*}", "adaln_single.emb.timestep_embedder.linear_1.{*}"),
        ("t_embedder.mlp.2.{*}", "adaln_single.emb.timestep_embedder.linear_2.{*}"),
        ("csize_embedder.mlp.0.{*}", "adaln_single.emb.resolution_embedder.linear_1.{*}"),
        ("csize_embedder.mlp.2.{*}", "adaln_single.emb.resolution_embedder.linear_2.{*}"),
        ("ar_embedder.mlp.0.{*}", "adaln_single.emb.aspect_ratio_embedder.linear_1.{*}"),
        ("ar_embedder.mlp.2.{*}", "adaln_single.emb.aspect_ratio_embedder.linear_2.{*}"),
        ("t_block.1.{*}", "adaln_single.linear.{*}"),
        ("blocks.{i}.scale_shift_table", "transformer_blocks.{i}.scale_shift_table"),
        ("blocks.{i}.attn.proj.{*}", "transformer_blocks.{i}.attn1.to_out.0.{*}"),
        ("blocks.{i}.mlp.fc1.{*}", "transformer_blocks.{i}.ff.net.0.proj.{*}"),
        ("blocks.{i}.mlp.fc2.{*}", "transformer_blocks.{i}.ff.net.2.{*}"),
        ("blocks.{i}.cross_attn.q_linear.{*}", "transformer_blocks.{i}.attn2.to_q.{*}"),
        ("blocks.{i}.cross_attn.proj.{*}", "transformer_blocks.{i}.attn2.to_out.0.{*}"),
        ("final_layer.linear.{*}", "proj_out.{*}"),
        ("final_layer.scale_shift_table", "scale_shift_table"),
    ]

    public static let fromOriginal = NameRuleTable(pairs.map { NameRule($0.original, $0.canonical) })
    public static let toOriginal = NameRuleTable(pairs.map { NameRule($0.canonical, $0.original) })

    /// Fused original tensors of block `i` and the canonical tensors their rows hold, in order.
    public static func fused(block i: Int, _ suffix: String) -> [(original: String, parts: [String])] {
        let b = "transformer_blocks.\(i)."
        return [
            ("blocks.\(i).attn.qkv.\(suffix)", ["to_q", "to_k", "to_v"].map { b + "attn1.\($0).\(suffix)" }),
            ("blocks.\(i).cross_attn.kv_linear.\(suffix)", ["to_k", "to_v"].map { b + "attn2.\($0).\(suffix)" }),
        ]
    }

    /// The original name a canonical tensor is written under, and its slot among the rows of a
    /// fused tensor (`attn1.to_k` is rows 1 of 3 of `attn.qkv`).
    public static func toOriginal(_ name: String) -> ExportedTensor {
        let parts = name.split(separator: ".").map(String.init)
        if parts.count == 5, parts[0] == "transformer_blocks", let i = Int(parts[1]), ["attn1", "attn2"].contains(parts[2]) {
            for (original, members) in fused(block: i, parts[4]) {
                if let k = members.firstIndex(of: name) { return ExportedTensor(original, slot: k, of: members.count) }
            }
        }
        return ExportedTensor(toOriginal.remap(name).name)
    }
}

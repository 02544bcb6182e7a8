// FLUX.1 checkpoint names: diffusers' `FluxTransformer2DModel` names are canonical. Black Forest
// Labs' layout (`flux1-dev.safetensors`: `img_in`, `txt_in`, `time_in`, `vector_in`, `guidance_in`,
// `double_blocks.N.{img,txt}_{mod,attn,mlp}`, `single_blocks.N.{linear1,linear2,norm,modulation}`,
// `final_layer`; ComfyUI files add `model.diffusion_model.`) maps onto them as diffusers'
// `convert_flux_transformer_checkpoint_to_diffusers` (loaders/single_file_utils.py) does: fused
// qkv rows split in thirds, each single block's `linear1` split into q | k | v | mlp (D, D, D, 4D
// rows), the final norm's [shift, scale] rows swapped to diffusers' [scale, shift], the rest renamed.

public enum FluxNaming {
    /// Anchors: the image input projection of each layout.
    public static let diffusersAnchor = "x_embedder.weight"
    public static let originalAnchor = "img_in.weight"

    /// One-to-one renames, BFL <-> canonical (the same pairs serve both directions).
    static let pairs: [(original: String, canonical: String)] = [
        ("img_in.{*}", "x_embedder.{*}"),
        ("txt_in.{*}", "context_embedder.{*}"),
        ("time_in.in_layer.{*}", "time_text_embed.timestep_embedder.linear_1.{*}"),
        ("time_in.out_layer.{*}", "time_text_embed.timestep_embedder.linear_2.{*}"),
        ("guidance_in.in_layer.{*}", "time_text_embed.guidance_embedder.linear_1.{*}"),
        ("guidance_in.out_layer.{*}", "time_text_embed.guidance_embedder.linear_2.{*}"),
        ("vector_in.in_layer.{*}", "time_text_embed.text_embedder.linear_1.{*}"),
        ("vector_in.out_layer.{*}", "time_text_embed.text_embedder.linear_2.{*}"),
        ("double_blocks.{i}.img_mod.lin.{*}", "transformer_blocks.{i}.norm1.linear.{*}"),
        ("double_blocks.{i}.txt_mod.lin.{*}", "transformer_blocks.{i}.norm1_context.linear.{*}"),
        ("double_blocks.{i}.img_attn.norm.query_norm.scale", "transformer_blocks.{i}.attn.norm_q.weight"),
        ("double_blocks.{i}.img_attn.norm.key_norm.scale", "transformer_blocks.{i}.attn.norm_k.weight"),
        ("double_blocks.{i}.txt_attn.norm.query_norm.scale", "transformer_blocks.{i}.attn.norm_added_q.weight"),
        ("double_blocks.{i}.txt_attn.norm.key_norm.scale", "transformer_blocks.{i}.attn.norm_added_k.weight"),
        ("double_blocks.{i}.img_attn.proj.{*}", "transformer_blocks.{i}.attn.to_out.0.{*}"),
        ("double_blocks.{i}.txt_attn.proj.{*}", "transformer_blocks.{i}.attn.to_add_out.{*}"),
        ("double_blocks.{i}.img_mlp.0.{*}", "transformer_blocks.{i}.ff.net.0.proj.{*}"),
        ("double_blocks.{i}.img_mlp.2.{*}", "transformer_blocks.{i}.ff.net.2.{*}"),
        ("double_blocks.{i}.txt_mlp.0.{*}", "transformer_blocks.{i}.ff_context.net.0.proj.{*}"),
        ("double_blocks.{i}.txt_mlp.2.{*}", "transformer_blocks.{i}.ff_context.net.2.{*}"),
        ("single_blocks.{i}.modulation.lin.{*}", "single_transformer_blocks.{i}.norm.linear.{*}"),
        ("single_blocks.{i}.norm.query_norm.scale", "single_transformer_blocks.{i}.attn.norm_q.weight"),
        ("single_blocks.{i}.norm.key_norm.scale", "single_transformer_blocks.{i}.attn.norm_k.weight"),
        ("single_blocks.{i}.linear2.{*}", "single_transformer_blocks.{i}.proj_out.{*}"),
        ("final_layer.linear.{*}", "proj_out.{*}"),
    ]

    public static let fromOriginal = NameRuleTable(pairs.map { NameRule($0.original, $0.canonical) })
    public static let toOriginal = NameRuleTable(pairs.map { NameRule($0.canonical, $0.original) })

    /// The final norm's modulation: [shift, scale] in BFL's files, [scale, shift] in diffusers'.
    public static let finalModulation = [("final_layer.adaLN_modulation.1.weight", "norm_out.linear.weight"),
                                         ("final_layer.adaLN_modulation.1.bias", "norm_out.linear.bias")]

    /// Fused BFL tensors and the canonical tensors their rows hold, in order, with each part's rows
    /// (`width` = D, `mlp` = the MLP width): the double blocks' qkv of each stream and the single
    /// blocks' `linear1`.
    public static func fused(width d: Int, mlp: Int, doubleBlocks: Int, singleBlocks: Int) -> [(original: String, parts: [(name: String, rows: Int)])] {
        var out: [(String, [(String, Int)])] = []
        for s in ["weight", "bias"] {
            for i in 0..<doubleBlocks {
                let b = "transformer_blocks.\(i).attn."
                out.append(("double_blocks.\(i).img_attn.qkv.\(s)", ["to_q", "to_k", "to_v"].map { (b + $0 + "." + s, d) }))
                out.append(("double_blocks.\(i).txt_attn.qkv.\(s)", ["add_q_proj", "add_k_proj", "add_v_proj"].map { (b + $0 + "." + s, d) }))
            }
            for i in 0..<singleBlocks {
                let b = "single_transformer_blocks.\(i)."
                out.append(("single_blocks.\(i).linear1.\(s)",
                            ["attn.to_q", "attn.to_k", "attn.to_v"].map { (b + $0 + "." + s, d) } + [(b + "proj_mlp." + s, mlp)]))
            }
        }
        return out
    }

    /// The BFL name a canonical tensor is written under: its slot among the rows of a fused tensor
    /// (`attn.to_k` is rows 1 of 3 of `img_attn.qkv`; `proj_mlp` the last of 4 parts of `linear1`),
    /// the final modulation with its halves swapped, or a rename.
    public static func toOriginal(_ name: String) -> ExportedTensor {
        if let f = finalModulation.first(where: { $0.1 == name }) { return ExportedTensor(f.0, part: .swappedHalves) }
        let parts = name.split(separator: ".").map(String.init)
        guard parts.count >= 4, let i = Int(parts[1]) else { return ExportedTensor(toOriginal.remap(name).name) }
        let suffix = parts[parts.count - 1]
        let member = parts[2...].dropLast().joined(separator: ".")
        if parts[0] == "transformer_blocks" {
            if let k = ["attn.to_q", "attn.to_k", "attn.to_v"].firstIndex(of: member) {
                return ExportedTensor("double_blocks.\(i).img_attn.qkv.\(suffix)", slot: k, of: 3)
            }
            if let k = ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"].firstIndex(of: member) {
                return ExportedTensor("double_blocks.\(i).txt_attn.qkv.\(suffix)", slot: k, of: 3)
            }
        } else if parts[0] == "single_transformer_blocks",
                  let k = ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"].firstIndex(of: member) {
            return ExportedTensor("single_blocks.\(i).linear1.\(suffix)", slot: k, of: 4)
        }
        return ExportedTensor(toOriginal.remap(name).name)
    }
}

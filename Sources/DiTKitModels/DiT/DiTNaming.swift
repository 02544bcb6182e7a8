// DiT checkpoint names: the official facebookresearch/DiT names are canonical; diffusers'
// DiTTransformer2DModel names map onto them (scripts/convert_dit_to_diffusers.py, reversed).

public enum DiTNaming {
    /// Anchor tensors that identify each naming scheme.
    public static let officialAnchor = "x_embedder.proj.weight"
    public static let diffusersAnchor = "pos_embed.proj.weight"

    /// diffusers -> official, for tensors that map one to one.
    public static let fromDiffusers = NameRuleTable([
        NameRule("pos_embed.proj.{*}", "x_embedder.proj.{*}"),
        NameRule("transformer_blocks.{i}.norm1.linear.{*}", "blocks.{i}.adaLN_modulation.1.{*}"),
        NameRule("transformer_blocks.{i}.attn1.to_out.0.{*}", "blocks.{i}.attn.proj.{*}"),
        NameRule("transformer_blocks.{i}.ff.net.0.proj.{*}", "blocks.{i}.mlp.fc1.{*}"),
        NameRule("transformer_blocks.{i}.ff.net.2.{*}", "blocks.{i}.mlp.fc2.{*}"),
        NameRule("proj_out_1.{*}", "final_layer.adaLN_modulation.1.{*}"),
        NameRule("proj_out_2.{*}", "final_layer.linear.{*}"),
    ])

    /// Embedders diffusers copies into every block: official name -> diffusers name in block `i`.
    public static let foldedEmbedders: [(official: String, diffusers: (Int) -> String)] = [
        ("t_embedder.mlp.0.weight", { "transformer_blocks.\($0).norm1.emb.timestep_embedder.linear_1.weight" }),
        ("t_embedder.mlp.0.bias", { "transformer_blocks.\($0).norm1.emb.timestep_embedder.linear_1.bias" }),
        ("t_embedder.mlp.2.weight", { "transformer_blocks.\($0).norm1.emb.timestep_embedder.linear_2.weight" }),
        ("t_embedder.mlp.2.bias", { "transformer_blocks.\($0).norm1.emb.timestep_embedder.linear_2.bias" }),
        ("y_embedder.embedding_table.weight", { "transformer_blocks.\($0).norm1.emb.class_embedder.embedding_table.weight" }),
    ]

    /// diffusers' separate q, k, v of block `i`, merged into the official qkv rows [q | k | v].
    public static func splitAttention(block i: Int, _ suffix: String) -> [String] {
        ["to_q", "to_k", "to_v"].map { "transformer_blocks.\(i).attn1.\($0).\(suffix)" }
    }

    /// official -> diffusers for every tensor (the inverse of the above), for exports.
    /// Returns the diffusers names a canonical tensor becomes (several for folded/split ones).
    public static func toDiffusers(_ name: String, depth: Int) -> [ExportedTensor] {
        let parts = name.split(separator: ".").map(String.init)
        if name == "pos_embed" { return [] }
        if let f = foldedEmbedders.first(where: { $0.official == name }) {
            return (0..<depth).map { ExportedTensor(f.diffusers($0)) }
        }
        if parts.count == 5, parts[0] == "blocks", parts[2] == "attn", parts[3] == "qkv", let i = Int(parts[1]) {
            return splitAttention(block: i, parts[4]).enumerated().map { ExportedTensor($0.element, part: .rows(part: $0.offset, of: 3)) }
        }
        let inverse: [(String, String)] = [
            ("x_embedder.proj.{*}", "pos_embed.proj.{*}"),
            ("blocks.{i}.adaLN_modulation.1.{*}", "transformer_blocks.{i}.norm1.linear.{*}"),
            ("blocks.{i}.attn.proj.{*}", "transformer_blocks.{i}.attn1.to_out.0.{*}"),
            ("blocks.{i}.mlp.fc1.{*}", "transformer_blocks.{i}.ff.net.0.proj.{*}"),
            ("blocks.{i}.mlp.fc2.{*}", "transformer_blocks.{i}.ff.net.2.{*}"),
            ("final_layer.adaLN_modulation.1.{*}", "proj_out_1.{*}"),
            ("final_layer.linear.{*}", "proj_out_2.{*}"),
        ]
        for (p, t) in inverse {
            let r = NameRule(p, t)
            if let c = r.match(name) { return [ExportedTensor(r.apply(c, levels: 0))] }
        }
        return [ExportedTensor(name)]
    }
}

// SD-VAE checkpoint names: current diffusers names are canonical. Original LDM/CompVis names
// (`encoder.down.0.block.0`, `mid.attn_1.q` as 1x1 convs, `decoder.up` in reverse) and legacy
// diffusers attention names (`query/key/value/proj_attn`) map onto them
// (diffusers loaders/single_file_utils.py `convert_ldm_vae_checkpoint`).

public enum VAENaming {
    public static let anchor = "encoder.conv_in.weight"
    public static let ldmAnchor = "encoder.down.0.block.0.norm1.weight"
    public static let legacyAttentionAnchor = "encoder.mid_block.attentions.0.query.weight"

    private static func midRules(_ side: String) -> [NameRule] {
        [
            NameRule("\(side).mid.block_1.{*}", "\(side).mid_block.resnets.0.{*}"),
            NameRule("\(side).mid.block_2.{*}", "\(side).mid_block.resnets.1.{*}"),
            NameRule("\(side).mid.attn_1.norm.{*}", "\(side).mid_block.attentions.0.group_norm.{*}"),
            NameRule("\(side).mid.attn_1.q.{*}", "\(side).mid_block.attentions.0.to_q.{*}", .squeezeTo2D),
            NameRule("\(side).mid.attn_1.k.{*}", "\(side).mid_block.attentions.0.to_k.{*}", .squeezeTo2D),
            NameRule("\(side).mid.attn_1.v.{*}", "\(side).mid_block.attentions.0.to_v.{*}", .squeezeTo2D),
            NameRule("\(side).mid.attn_1.proj_out.{*}", "\(side).mid_block.attentions.0.to_out.0.{*}", .squeezeTo2D),
            // Legacy diffusers attention names, and 4-D weights under current names.
            NameRule("\(side).mid_block.attentions.0.query.{*}", "\(side).mid_block.attentions.0.to_q.{*}", .squeezeTo2D),
            NameRule("\(side).mid_block.attentions.0.key.{*}", "\(side).mid_block.attentions.0.to_k.{*}", .squeezeTo2D),
            NameRule("\(side).mid_block.attentions.0.value.{*}", "\(side).mid_block.attentions.0.to_v.{*}", .squeezeTo2D),
            NameRule("\(side).mid_block.attentions.0.proj_attn.{*}", "\(side).mid_block.attentions.0.to_out.0.{*}", .squeezeTo2D),
            NameRule("\(side).mid_block.attentions.0.to_q.{*}", "\(side).mid_block.attentions.0.to_q.{*}", .squeezeTo2D),
            NameRule("\(side).mid_block.attentions.0.to_k.{*}", "\(side).mid_block.attentions.0.to_k.{*}", .squeezeTo2D),
            NameRule("\(side).mid_block.attentions.0.to_v.{*}", "\(side).mid_block.attentions.0.to_v.{*}", .squeezeTo2D),
            NameRule("\(side).mid_block.attentions.0.to_out.0.{*}", "\(side).mid_block.attentions.0.to_out.0.{*}", .squeezeTo2D),
            NameRule("\(side).norm_out.{*}", "\(side).conv_norm_out.{*}"),
        ]
    }

    /// Any accepted VAE naming -> current diffusers names.
    public static let toCanonical = NameRuleTable(
        [
            NameRule("encoder.down.{i}.block.{j}.nin_shortcut.{*}", "encoder.down_blocks.{i}.resnets.{j}.conv_shortcut.{*}"),
            NameRule("encoder.down.{i}.block.{j}.{*}", "encoder.down_blocks.{i}.resnets.{j}.{*}"),
            NameRule("encoder.down.{i}.downsample.conv.{*}", "encoder.down_blocks.{i}.downsamplers.0.conv.{*}"),
            NameRule("decoder.up.{k}.block.{j}.nin_shortcut.{*}", "decoder.up_blocks.{rev:k}.resnets.{j}.conv_shortcut.{*}"),
            NameRule("decoder.up.{k}.block.{j}.{*}", "decoder.up_blocks.{rev:k}.resnets.{j}.{*}"),
            NameRule("decoder.up.{k}.upsample.conv.{*}", "decoder.up_blocks.{rev:k}.upsamplers.0.conv.{*}"),
        ] + midRules("encoder") + midRules("decoder"))

    /// Canonical (diffusers) -> original LDM names, for exports.
    public static let toLDM = NameRuleTable([
        NameRule("encoder.down_blocks.{i}.resnets.{j}.conv_shortcut.{*}", "encoder.down.{i}.block.{j}.nin_shortcut.{*}"),
        NameRule("encoder.down_blocks.{i}.resnets.{j}.{*}", "encoder.down.{i}.block.{j}.{*}"),
        NameRule("encoder.down_blocks.{i}.downsamplers.0.conv.{*}", "encoder.down.{i}.downsample.conv.{*}"),
        NameRule("decoder.up_blocks.{k}.resnets.{j}.conv_shortcut.{*}", "decoder.up.{rev:k}.block.{j}.nin_shortcut.{*}"),
        NameRule("decoder.up_blocks.{k}.resnets.{j}.{*}", "decoder.up.{rev:k}.block.{j}.{*}"),
        NameRule("decoder.up_blocks.{k}.upsamplers.0.conv.{*}", "decoder.up.{rev:k}.upsample.conv.{*}"),
    ] + ["encoder", "decoder"].flatMap { s in [
        NameRule("\(s).mid_block.resnets.0.{*}", "\(s).mid.block_1.{*}"),
        NameRule("\(s).mid_block.resnets.1.{*}", "\(s).mid.block_2.{*}"),
        NameRule("\(s).mid_block.attentions.0.group_norm.{*}", "\(s).mid.attn_1.norm.{*}"),
        NameRule("\(s).mid_block.attentions.0.to_q.{*}", "\(s).mid.attn_1.q.{*}"),
        NameRule("\(s).mid_block.attentions.0.to_k.{*}", "\(s).mid.attn_1.k.{*}"),
        NameRule("\(s).mid_block.attentions.0.to_v.{*}", "\(s).mid.attn_1.v.{*}"),
        NameRule("\(s).mid_block.attentions.0.to_out.0.{*}", "\(s).mid.attn_1.proj_out.{*}"),
        NameRule("\(s).conv_norm_out.{*}", "\(s).norm_out.{*}"),
    ] })
}

#!/usr/bin/env python3
"""Writes the SD3 / SD3.5 test fixtures (Tests/Fixtures/sd3/) with the real producers.

Two tiny MMDiT transformers with random weights, made with diffusers' SD3Transformer2DModel:
  mmditx: SD3.5-medium style (MMDiT-X): dual attention in layers 0 and 1 of 3, qk RMSNorm, the last
          layer context_pre_only; 2 heads of 4 (width 8); mirrored in Stability's original mmditx.py
  mmdit:  SD3-medium style: 2 layers, no dual attention, no qk norm; width 16, so its MLP weights (64 x 16)
          reach the 1024 values from which the int8 policy quantizes
and a tiny SD3-style VAE (diffusers AutoencoderKL: 16 latent channels, no quant convolutions,
scaling 1.5305, shift 0.0609).

Files (all under Tests/Fixtures/sd3/):
  mmditx/transformer/{config.json, diffusion_pytorch_model.safetensors}   diffusers save_pretrained (f32)
  mmdit/transformer/{config.json, diffusion_pytorch_model.safetensors}    diffusers save_pretrained (f32)
  mmditx_bare.safetensors       the mmditx weights in Stability's names without a prefix, as the original
                                MMDiTX.state_dict() holds them (ComfyUI's diffusion_models files), f32
  mmditx_full_f16.safetensors   a full single-file checkpoint as Stability and ComfyUI save them, in f16:
                                model.diffusion_model.* (the transformer), first_stage_model.* (the VAE in
                                LDM names) and text_encoders.* (stand-ins for the CLIP / T5 weights)
  mmditx_reference.h5           diffusers reference activations (tools/dump_reference.py dump_diffusers),
                                non-square latents (8x6) so the position-embedding crop is asymmetric
  mmditx_original_check.json    how far Stability's mmditx.py forward is from diffusers' on the same weights
  vae_decoded.h5                /latents and /images = vae.decode(latents / 1.5305 + 0.0609) as StableDiffusion3Pipeline
                                decodes (the VAE's f16-rounded weights, run in f32)
  text.h5                       /encoder_hidden_states, /pooled_projections and their /negative_* (2 prompts)
  noise.h5                      /noise, the initial latents of the sampling check
  mmdit_latents.h5              /latents: diffusers' StableDiffusion3Pipeline loop (FlowMatchEulerDiscreteScheduler,
                                shift 3.0, 8 steps, guidance 4.5, prompt embeds given, output_type="latent") from
                                that noise and those features
  published_counts.json         tensor and parameter counts of the published configurations, from diffusers'
                                class and from Stability's MMDiTX

Usage (torch, diffusers, h5py, einops, transformers; see CONTRIBUTING.md):
    python tools/make_sd3_fixtures.py --sd3-src DIR
DIR is a checkout of Stability-AI/sd3.5 (mmditx.py, other_impls.py). Its MMDiTX hard-codes the width as
64 per layer with one head per layer; the generator relaxes that one rule (two lines of __init__, replaced
by the tiny width and head count) so the tiny transformer runs through the original code. Without --sd3-src
the original-code checks are skipped.
"""
import argparse
import importlib.util
import json
import os
import sys
import types
from collections import OrderedDict

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_reference import dump_diffusers  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "sd3")

CONFIGS = {
    "mmditx": dict(sample_size=8, patch_size=2, in_channels=4, num_layers=3, attention_head_dim=4, num_attention_heads=2,
                   joint_attention_dim=12, caption_projection_dim=8, pooled_projection_dim=10, out_channels=4,
                   pos_embed_max_size=6, dual_attention_layers=(0, 1), qk_norm="rms_norm"),
    "mmdit": dict(sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
                  joint_attention_dim=12, caption_projection_dim=16, pooled_projection_dim=10, out_channels=4,
                  pos_embed_max_size=5, dual_attention_layers=(), qk_norm=None),
}
TOKENS = 5   # text tokens of every fixture
# Weight scale of the matrices. The sampling loop runs on mmdit: at 0.15 its 8 guided steps are well
# conditioned (diffusers' own f32 and f64 loops agree to 2.6e-7; at 0.3 they differ by 6e-5, which
# would hide a real discrepancy).
SCALES = {"mmditx": 0.3, "mmdit": 0.15}


def randomize(model, seed, scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm_q" in name or "norm_k" in name or "norm_added" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * (scale if p.ndim > 1 else 0.05))


# --- diffusers -> Stability's names (diffusers' convert_sd3_transformer_checkpoint_to_diffusers, reversed) ---

def swap_halves(t):
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def to_original(sd, cfg):
    o = OrderedDict()
    n = cfg["num_layers"]
    o["pos_embed"] = sd["pos_embed.pos_embed"]
    pairs = [("x_embedder.proj.", "pos_embed.proj."), ("t_embedder.mlp.0.", "time_text_embed.timestep_embedder.linear_1."),
             ("t_embedder.mlp.2.", "time_text_embed.timestep_embedder.linear_2."),
             ("y_embedder.mlp.0.", "time_text_embed.text_embedder.linear_1."),
             ("y_embedder.mlp.2.", "time_text_embed.text_embedder.linear_2."), ("context_embedder.", "context_embedder.")]
    for a, b in pairs:
        for s in ("weight", "bias"):
            o[a + s] = sd[b + s]
    for i in range(n):
        t, x, c = "transformer_blocks.%d." % i, "joint_blocks.%d.x_block." % i, "joint_blocks.%d.context_block." % i
        last = i == n - 1
        for s in ("weight", "bias"):
            o[x + "attn.qkv." + s] = torch.cat([sd[t + "attn.to_%s.%s" % (k, s)] for k in "qkv"])
            o[c + "attn.qkv." + s] = torch.cat([sd[t + "attn.add_%s_proj.%s" % (k, s)] for k in "qkv"])
            o[x + "attn.proj." + s] = sd[t + "attn.to_out.0." + s]
            if not last:
                o[c + "attn.proj." + s] = sd[t + "attn.to_add_out." + s]
            o[x + "adaLN_modulation.1." + s] = sd[t + "norm1.linear." + s]
            ctx = sd[t + "norm1_context.linear." + s]
            o[c + "adaLN_modulation.1." + s] = swap_halves(ctx) if last else ctx
            o[x + "mlp.fc1." + s] = sd[t + "ff.net.0.proj." + s]
            o[x + "mlp.fc2." + s] = sd[t + "ff.net.2." + s]
            if not last:
                o[c + "mlp.fc1." + s] = sd[t + "ff_context.net.0.proj." + s]
                o[c + "mlp.fc2." + s] = sd[t + "ff_context.net.2." + s]
            if i in cfg["dual_attention_layers"]:
                o[x + "attn2.qkv." + s] = torch.cat([sd[t + "attn2.to_%s.%s" % (k, s)] for k in "qkv"])
                o[x + "attn2.proj." + s] = sd[t + "attn2.to_out.0." + s]
        if cfg["qk_norm"]:
            o[x + "attn.ln_q.weight"] = sd[t + "attn.norm_q.weight"]
            o[x + "attn.ln_k.weight"] = sd[t + "attn.norm_k.weight"]
            o[c + "attn.ln_q.weight"] = sd[t + "attn.norm_added_q.weight"]
            o[c + "attn.ln_k.weight"] = sd[t + "attn.norm_added_k.weight"]
            if i in cfg["dual_attention_layers"]:
                o[x + "attn2.ln_q.weight"] = sd[t + "attn2.norm_q.weight"]
                o[x + "attn2.ln_k.weight"] = sd[t + "attn2.norm_k.weight"]
    for s in ("weight", "bias"):
        o["final_layer.linear." + s] = sd["proj_out." + s]
        o["final_layer.adaLN_modulation.1." + s] = swap_halves(sd["norm_out.linear." + s])
    return OrderedDict((k, v.clone().contiguous()) for k, v in o.items())


# --- Stability's original code, importable with a tiny width ------------------------------------

def load_original_code(src):
    """Imports mmditx.py from `src` with one change: MMDiTX's width rule (`hidden_size = 64 * depth`,
    `num_heads = depth`) reads the module globals TINY_WIDTH / TINY_HEADS when they are set."""
    sys.path.insert(0, src)
    import other_impls  # noqa: F401  (mmditx imports it by name)
    text = open(os.path.join(src, "mmditx.py")).read()
    rule = "hidden_size = 64 * depth\n        num_heads = depth\n"
    assert text.count(rule) == 1, "mmditx.py changed: its width rule is not where the generator expects it"
    text = text.replace(rule, "hidden_size = TINY_WIDTH or 64 * depth\n        num_heads = TINY_HEADS or depth\n")
    mod = types.ModuleType("mmditx")
    mod.__file__ = os.path.join(src, "mmditx.py")
    mod.TINY_WIDTH = None
    mod.TINY_HEADS = None
    exec(compile(text, mod.__file__, "exec"), mod.__dict__)
    sys.modules["mmditx"] = mod
    return mod


def original_model(mod, cfg, tiny=True):
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    mod.TINY_WIDTH, mod.TINY_HEADS = (d, cfg["num_attention_heads"]) if tiny else (None, None)
    try:
        return mod.MMDiTX(input_size=None, pos_embed_scaling_factor=None, pos_embed_offset=None,
                          pos_embed_max_size=cfg["pos_embed_max_size"], patch_size=cfg["patch_size"],
                          in_channels=cfg["in_channels"], out_channels=cfg["out_channels"], depth=cfg["num_layers"],
                          num_patches=cfg["pos_embed_max_size"] ** 2, adm_in_channels=cfg["pooled_projection_dim"],
                          context_embedder_config={"target": "torch.nn.Linear",
                                                   "params": {"in_features": cfg["joint_attention_dim"], "out_features": d}},
                          qk_norm="rms" if cfg["qk_norm"] == "rms_norm" else None,
                          x_block_self_attn_layers=list(cfg["dual_attention_layers"]))
    finally:
        mod.TINY_WIDTH = mod.TINY_HEADS = None


def write_h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)


def inputs(cfg, seed, size=(8, 6), batch=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg["in_channels"], *size, generator=g)
    y = torch.randn(batch, TOKENS, cfg["joint_attention_dim"], generator=g)
    pooled = torch.randn(batch, cfg["pooled_projection_dim"], generator=g)
    t = torch.tensor([980.0, 125.5])[:batch]
    return {"hidden_states": x, "encoder_hidden_states": y, "pooled_projections": pooled, "timestep": t}


def modules_to_dump(cfg):
    n = cfg["num_layers"]
    blocks = ["transformer_blocks.%d" % i for i in range(n)]
    names = ["pos_embed", "time_text_embed", "context_embedder", "norm_out", "proj_out",
             "transformer_blocks.0.attn.norm_q"]   # one module DiTKit does not trace, to be listed as skipped
    for i, b in enumerate(blocks):
        names += [b, b + ".norm1", b + ".norm1_context", b + ".attn", b + ".norm2", b + ".ff"]
        if i in cfg["dual_attention_layers"]:
            names.append(b + ".attn2")
        if i < n - 1:
            names += [b + ".norm2_context", b + ".ff_context"]
    return set(names)


def prune(path, keep):
    """Rewrites a reference file with only the /layers datasets `keep` accepts (each dataset costs
    about half a kilobyte of HDF5 metadata; the fixtures stay small)."""
    with h5py.File(path) as f:
        attrs = dict(f.attrs)
        data = {}
        f.visititems(lambda n, o: data.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        for k, v in data.items():
            if not k.startswith("layers/") or keep(k[len("layers/"):]):
                f.create_dataset(k, data=v)


def fine_layers(name):
    """Every traced output of block 0 (dual attention) and of the last block (context_pre_only); the
    outputs and the second attention of the blocks between, which repeat block 0's structure."""
    parts = name.split(".")
    if parts[0] != "transformer_blocks" or parts[1] == "0" or len(parts) < 4:
        return True
    if parts[1] == "1":
        return parts[2] == "attn2"
    return parts[2] not in ("norm1", "norm1_context") or parts[3] == "0"


@torch.no_grad()
def make_transformer(name, seed):
    from diffusers import SD3Transformer2DModel
    cfg = CONFIGS[name]
    model = SD3Transformer2DModel(**cfg)
    randomize(model, seed, SCALES[name])
    model.eval()
    model.save_pretrained(os.path.join(ROOT, name, "transformer"), safe_serialization=True)
    kw = inputs(cfg, seed + 100)
    if name == "mmditx":
        path = os.path.join(ROOT, name + "_reference.h5")
        dump_diffusers(model, kw, path, "sd3", modules=modules_to_dump(cfg))
        prune(path, fine_layers)
    return model, cfg, kw


@torch.no_grad()
def make_original_layouts(model, cfg, kw, mod, vae_ldm, seed):
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers
    sd = model.state_dict()
    orig = to_original(sd, cfg)
    # diffusers' own single-file converter reads these names back to the same tensors.
    back = convert_sd3_transformer_checkpoint_to_diffusers({"model.diffusion_model." + k: v.clone() for k, v in orig.items()})
    assert set(back) == set(sd), set(back) ^ set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    check = {}
    if mod is not None:
        om = original_model(mod, cfg)
        om.load_state_dict(orig, strict=True)
        om.eval()
        # The bare layout in the original module's own order.
        orig = OrderedDict((k, v.clone().contiguous()) for k, v in om.state_dict().items())
        out_o = om(kw["hidden_states"], kw["timestep"], y=kw["pooled_projections"], context=kw["encoder_hidden_states"])
        out_d = model(**kw).sample
        check = {"original_vs_diffusers_rel_l2": float((out_o - out_d).norm() / out_d.norm()),
                 "max_abs": float((out_o - out_d).abs().max())}
        print("mmditx: Stability's mmditx.py vs diffusers forward:", check)
    save_file(orig, os.path.join(ROOT, "mmditx_bare.safetensors"))
    with open(os.path.join(ROOT, "mmditx_original_check.json"), "w") as f:
        json.dump(check, f, indent=1, sort_keys=True)

    # A full checkpoint in f16, as Stability's sd3_medium*.safetensors and ComfyUI's saved checkpoints hold it.
    full = OrderedDict(("model.diffusion_model." + k, v.half()) for k, v in orig.items())
    for k, v in vae_ldm.items():
        full["first_stage_model." + k] = v.half()
    g = torch.Generator().manual_seed(seed)
    for k, shape in [("text_encoders.clip_g.transformer.text_model.embeddings.token_embedding.weight", (16, 8)),
                     ("text_encoders.clip_g.transformer.text_model.final_layer_norm.weight", (8,)),
                     ("text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight", (6, 8)),
                     ("text_encoders.clip_l.transformer.text_projection.weight", (8, 8)),
                     ("text_encoders.t5xxl.transformer.shared.weight", (16, 12)),
                     ("text_encoders.t5xxl.transformer.encoder.final_layer_norm.weight", (12,))]:
        full[k] = torch.randn(shape, generator=g).half()
    save_file(full, os.path.join(ROOT, "mmditx_full_f16.safetensors"))



@torch.no_grad()
def make_vae(seed):
    """A tiny SD3-style AutoencoderKL with f16-exact weights, its LDM names, and the pipeline's
    latents-to-image step on seeded latents."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from make_fixtures import diffusers_to_ldm_vae
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
                        block_out_channels=(32,), layers_per_block=1, latent_channels=16, norm_num_groups=32, sample_size=16,
                        use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=False,
                        scaling_factor=1.5305, shift_factor=0.0609)
    g = torch.Generator().manual_seed(seed)
    for name, p in vae.named_parameters():
        v = torch.randn(p.shape, generator=g) * (0.15 if p.dim() > 1 else 0.05) + (1.0 if "norm" in name and name.endswith("weight") else 0.0)
        p.copy_(v.half().float())   # stored as f16 in the full checkpoint: exact
    vae.eval()
    vsd = vae.state_dict()
    ldm = diffusers_to_ldm_vae(vsd, 1)
    back = convert_ldm_vae_checkpoint(ldm, dict(vae.config))
    assert set(back) == set(vsd), set(back) ^ set(vsd)
    assert all(torch.equal(back[k].reshape(vsd[k].shape), vsd[k]) for k in vsd)
    latents = torch.randn(2, 16, 4, 4, generator=g)
    # StableDiffusion3Pipeline: latents = latents / scaling_factor + shift_factor; image = vae.decode(latents)
    images = vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor).sample
    write_h5(os.path.join(ROOT, "vae_decoded.h5"), latents=latents.numpy(), images=images.float().numpy())
    return ldm


@torch.no_grad()
def sampling(model, cfg, seed):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    g = torch.Generator().manual_seed(seed)
    n = 2
    y = torch.randn(n, TOKENS, cfg["joint_attention_dim"], generator=g)
    pooled = torch.randn(n, cfg["pooled_projection_dim"], generator=g)
    ny = torch.randn(n, TOKENS, cfg["joint_attention_dim"], generator=g)
    npooled = torch.randn(n, cfg["pooled_projection_dim"], generator=g)
    noise = torch.randn(n, cfg["in_channels"], 8, 8, generator=g)
    write_h5(os.path.join(ROOT, "text.h5"), encoder_hidden_states=y.numpy(), pooled_projections=pooled.numpy(),
             negative_encoder_hidden_states=ny.numpy(), negative_pooled_projections=npooled.numpy())
    write_h5(os.path.join(ROOT, "noise.h5"), noise=noise.numpy())
    # The SD3 / SD3.5 releases' scheduler config: FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0).
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipe = StableDiffusion3Pipeline(transformer=model, scheduler=sched, vae=None, text_encoder=None, tokenizer=None,
                                    text_encoder_2=None, tokenizer_2=None, text_encoder_3=None, tokenizer_3=None)
    latents = pipe(prompt_embeds=y, pooled_prompt_embeds=pooled, negative_prompt_embeds=ny, negative_pooled_prompt_embeds=npooled,
                   num_inference_steps=8, guidance_scale=4.5, latents=noise.clone(), height=64, width=64,
                   output_type="latent", return_dict=True).images
    write_h5(os.path.join(ROOT, "mmdit_latents.h5"), latents=latents.float().numpy())
    print("pipeline sigmas:", sched.sigmas.tolist())


PUBLISHED = {
    # DiTKit name: the diffusers config of the release (stabilityai/stable-diffusion-3*-*/transformer/config.json)
    "SD3-medium": dict(num_layers=24, num_attention_heads=24, caption_projection_dim=1536, pos_embed_max_size=192),
    "SD3.5-large": dict(num_layers=38, num_attention_heads=38, caption_projection_dim=2432, pos_embed_max_size=192, qk_norm="rms_norm"),
    "SD3.5-medium": dict(num_layers=24, num_attention_heads=24, caption_projection_dim=1536, pos_embed_max_size=384, qk_norm="rms_norm",
                         dual_attention_layers=tuple(range(13))),
}


@torch.no_grad()
def published_counts(mod):
    """Tensor and parameter counts of the published configurations, from diffusers' class (on the
    meta device) and, with the original code, from Stability's MMDiTX (its own width rule), and of
    the SD3 VAE from diffusers' AutoencoderKL."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    out = {}
    for name, extra in PUBLISHED.items():
        cfg = dict(sample_size=128, patch_size=2, in_channels=16, attention_head_dim=64, joint_attention_dim=4096,
                   pooled_projection_dim=2048, out_channels=16, **extra)
        with torch.device("meta"):
            m = SD3Transformer2DModel(**cfg)
        sd = m.state_dict()
        entry = {"diffusers": {"tensors": len(sd), "parameters": sum(v.numel() for v in sd.values())}}
        if mod is not None:
            full = dict(cfg, qk_norm=cfg.get("qk_norm"), dual_attention_layers=cfg.get("dual_attention_layers", ()))
            with torch.device("meta"):
                om = original_model(mod, full, tiny=False)
            osd = om.state_dict()
            entry["original"] = {"tensors": len(osd), "parameters": sum(v.numel() for v in osd.values())}
        out[name] = entry
    with torch.device("meta"):
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                            latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
    vsd = vae.state_dict()
    out["sd3-vae"] = {"diffusers": {"tensors": len(vsd), "parameters": sum(v.numel() for v in vsd.values())}}
    with open(os.path.join(ROOT, "published_counts.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sd3-src", help="a checkout of Stability-AI/sd3.5 (mmditx.py, other_impls.py)")
    a = ap.parse_args()
    os.makedirs(ROOT, exist_ok=True)
    mod = load_original_code(a.sd3_src) if a.sd3_src else None
    vae_ldm = make_vae(seed=5)
    x = make_transformer("mmditx", seed=11)
    make_original_layouts(*x, mod, vae_ldm, seed=13)
    mmdit, cfg, _ = make_transformer("mmdit", seed=23)
    sampling(mmdit, cfg, seed=31)
    published_counts(mod)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the FLUX.1 test fixtures (Tests/Fixtures/flux/) with the real producers.

Two small FLUX transformers with random weights, made with diffusers' FluxTransformer2DModel and
mirrored in Black Forest Labs' own code (flux/model.py `Flux`), width 32 (2 heads × 16), rotary
axes (4, 6, 6), 64 input channels (16 latent channels packed 2×2), text 32-d, pooled 16-d:
  dev:     guidance embedding, 1 double + 1 single block. Weights are float8-representable (every
           value rounded through float8_e4m3fn, the qk norms and the final layer through float8_e5m2)
           so that one set of weights exists exactly in bf16 and in float8.
  schnell: no guidance embedding, 1 double + 1 single block, float8_e4m3fn-representable.
Files:
  dev/model_index.json, dev/transformer/{config.json, diffusion_pytorch_model.safetensors}
                               a diffusers pipeline folder (save_pretrained, bf16)
  dev_bfl_fp8.safetensors      BFL layout (img_in, double_blocks.N.img_attn.qkv, single_blocks.N.linear1,
                               final_layer [shift, scale], ...), F8_E4M3 with F8_E5M2 qk norms and final layer
  schnell_comfy_fp8.safetensors  BFL layout under ComfyUI's `model.diffusion_model.` prefix, F8_E4M3 (as Comfy-Org's
                               flux1-schnell-fp8 ships the transformer)
  dev_reference.h5             diffusers reference activations at every module DiTKit traces (tools/dump_reference.py
                               dump_diffusers; proj_mlp and proj_out left out to keep the file small: /output is proj_out)
                               for two items of a 48×32 image (3×2 packed tokens) and 4 text tokens
  schnell_reference.h5         the same inputs: the conditioning vector (no guidance), block 0's outputs, /output
                               (the perturbed-block check is made at test time from the committed weights)
  bfl_check.json               how far BFL's forward (the BFL files loaded with strict=True) is from diffusers',
                               and the SHA-256 of dev's fused and swapped BFL tensors as float32 (what an original
                               export of an f32 bundle must write)
  text.h5, noise.h5            prompt features (/encoder_hidden_states, /pooled_projections) and /noise [2, 16, 4, 4]
  {dev,schnell}_latents.h5     diffusers' FluxPipeline loop (prompt embeds given directly, output_type="latent",
                               4 steps; dev guidance 3.5 with the resolution-dependent shift, schnell without),
                               from that noise (packed as the pipeline packs it), unpacked to /latents [2, 16, 4, 4]
  published_counts.json        tensor and parameter counts of FLUX.1-dev / -schnell and the FLUX VAE, from
                               diffusers' classes and BFL's (meta device)

Usage (torch, diffusers, safetensors, h5py, einops; see CONTRIBUTING.md):
    python tools/make_flux_fixtures.py --flux-src DIR
DIR is the `src/` folder of a black-forest-labs/flux checkout (it holds the `flux` package). Without
it the BFL checks and counts are skipped (the BFL-layout files are still written, by the inverse of
diffusers' convert_flux_transformer_checkpoint_to_diffusers).
"""
import argparse
import copy
import hashlib
import json
import os
import sys

import h5py
import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_reference import dump_diffusers  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "flux")

BODY = dict(patch_size=1, in_channels=64, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
            pooled_projection_dim=16, axes_dims_rope=(4, 6, 6))
CONFIGS = {
    "dev": dict(BODY, num_layers=1, num_single_layers=1, guidance_embeds=True),
    "schnell": dict(BODY, num_layers=1, num_single_layers=1, guidance_embeds=False),
}
E5M2 = ("norm_q", "norm_k", "norm_added_q", "norm_added_k", "norm_out", "proj_out.weight", "proj_out.bias")


def is_e5m2(name):
    # The qk norms and the final layer (norm_out, the model's own proj_out) are stored as F8_E5M2.
    return any(k in name for k in E5M2[:4]) or name.startswith("norm_out.") or name in ("proj_out.weight", "proj_out.bias")


def randomize(model, seed, e5m2_too):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm_q.weight", "norm_k.weight", "norm_added_q.weight", "norm_added_k.weight")):   # qk RMSNorm weights around 1
                v = 1 + 0.2 * torch.randn(p.shape, generator=g)
            else:
                v = torch.randn(p.shape, generator=g) * (0.08 if p.ndim > 1 else 0.03)
            p.copy_(v.to(torch.float8_e5m2 if e5m2_too and is_e5m2(name) else torch.float8_e4m3fn).float())


# --- diffusers -> BFL layout (the inverse of convert_flux_transformer_checkpoint_to_diffusers) ---

def to_bfl(sd, num_layers, num_single):
    o = {}
    def swap(w):
        scale, shift = w.chunk(2, dim=0)
        return torch.cat([shift, scale], dim=0)
    pairs = [("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"), ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
             ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"), ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
             ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"), ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
             ("context_embedder", "txt_in"), ("x_embedder", "img_in"), ("proj_out", "final_layer.linear")]
    for a, b in pairs:
        for s in ("weight", "bias"):
            if a + "." + s in sd:
                o[b + "." + s] = sd[a + "." + s].clone()
    for s in ("weight", "bias"):
        o["final_layer.adaLN_modulation.1." + s] = swap(sd["norm_out.linear." + s])
    for i in range(num_layers):
        t, b = "transformer_blocks.%d." % i, "double_blocks.%d." % i
        for s in ("weight", "bias"):
            o[b + "img_mod.lin." + s] = sd[t + "norm1.linear." + s].clone()
            o[b + "txt_mod.lin." + s] = sd[t + "norm1_context.linear." + s].clone()
            o[b + "img_attn.qkv." + s] = torch.cat([sd[t + "attn.to_%s.%s" % (x, s)] for x in "qkv"])
            o[b + "txt_attn.qkv." + s] = torch.cat([sd[t + "attn.add_%s_proj.%s" % (x, s)] for x in "qkv"])
            o[b + "img_attn.proj." + s] = sd[t + "attn.to_out.0." + s].clone()
            o[b + "txt_attn.proj." + s] = sd[t + "attn.to_add_out." + s].clone()
            o[b + "img_mlp.0." + s] = sd[t + "ff.net.0.proj." + s].clone()
            o[b + "img_mlp.2." + s] = sd[t + "ff.net.2." + s].clone()
            o[b + "txt_mlp.0." + s] = sd[t + "ff_context.net.0.proj." + s].clone()
            o[b + "txt_mlp.2." + s] = sd[t + "ff_context.net.2." + s].clone()
        o[b + "img_attn.norm.query_norm.scale"] = sd[t + "attn.norm_q.weight"].clone()
        o[b + "img_attn.norm.key_norm.scale"] = sd[t + "attn.norm_k.weight"].clone()
        o[b + "txt_attn.norm.query_norm.scale"] = sd[t + "attn.norm_added_q.weight"].clone()
        o[b + "txt_attn.norm.key_norm.scale"] = sd[t + "attn.norm_added_k.weight"].clone()
    for i in range(num_single):
        t, b = "single_transformer_blocks.%d." % i, "single_blocks.%d." % i
        for s in ("weight", "bias"):
            o[b + "modulation.lin." + s] = sd[t + "norm.linear." + s].clone()
            o[b + "linear1." + s] = torch.cat([sd[t + "attn.to_q." + s], sd[t + "attn.to_k." + s], sd[t + "attn.to_v." + s], sd[t + "proj_mlp." + s]])
            o[b + "linear2." + s] = sd[t + "proj_out." + s].clone()
        o[b + "norm.query_norm.scale"] = sd[t + "attn.norm_q.weight"].clone()
        o[b + "norm.key_norm.scale"] = sd[t + "attn.norm_k.weight"].clone()
    return o


def bfl_model(cfg):
    from flux.model import Flux, FluxParams
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    return Flux(FluxParams(in_channels=cfg["in_channels"], out_channels=cfg["in_channels"], vec_in_dim=cfg["pooled_projection_dim"],
                           context_in_dim=cfg["joint_attention_dim"], hidden_size=d, mlp_ratio=4.0, num_heads=cfg["num_attention_heads"],
                           depth=cfg["num_layers"], depth_single_blocks=cfg["num_single_layers"], axes_dim=list(cfg["axes_dims_rope"]),
                           theta=10_000, qkv_bias=True, guidance_embed=cfg["guidance_embeds"]))


def image_ids(rows, cols):
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] += torch.arange(rows)[:, None]
    ids[..., 2] += torch.arange(cols)[None, :]
    return ids.reshape(rows * cols, 3)


def inputs(cfg, seed, batch=2, rows=3, cols=2, tokens=4):
    """Packed latents of a 48×32-pixel image (3×2 tokens), 4 text tokens, timesteps 1.0 and 0.3."""
    g = torch.Generator().manual_seed(seed)
    kw = {"hidden_states": torch.randn(batch, rows * cols, cfg["in_channels"], generator=g),
          "encoder_hidden_states": torch.randn(batch, tokens, cfg["joint_attention_dim"], generator=g),
          "pooled_projections": torch.randn(batch, cfg["pooled_projection_dim"], generator=g),
          "timestep": torch.tensor([1.0, 0.3])[:batch],
          "img_ids": image_ids(rows, cols), "txt_ids": torch.zeros(tokens, 3)}
    if cfg["guidance_embeds"]:
        kw["guidance"] = torch.tensor([3.5, 1.0])[:batch]
    return kw


def write_h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)


def traced_modules(cfg, fine=True):
    if not fine:
        return {"time_text_embed", "transformer_blocks.0"}
    mods = ["x_embedder", "time_text_embed", "context_embedder", "norm_out"]
    if fine:
        mods += ["time_text_embed.timestep_embedder", "time_text_embed.text_embedder", "pos_embed"]
        if cfg["guidance_embeds"]:
            mods.append("time_text_embed.guidance_embedder")
        # One module DiTKit does not trace, to be listed as skipped.
        mods.append("transformer_blocks.0.attn.to_q")
    for i in range(cfg["num_layers"]):
        b = "transformer_blocks.%d" % i
        mods += [b] + ([b + "." + m for m in ("norm1", "norm1_context", "attn", "norm2", "ff", "norm2_context", "ff_context")] if fine else [])
    for i in range(cfg["num_single_layers"]):
        b = "single_transformer_blocks.%d" % i
        mods += [b] + ([b + "." + m for m in ("norm", "attn")] if fine else [])
    return set(mods)


@torch.no_grad()
def make(name, have_bfl, seed):
    from diffusers import FluxTransformer2DModel
    cfg = CONFIGS[name]
    model = FluxTransformer2DModel(**cfg)
    randomize(model, seed, e5m2_too=name == "dev")
    model.eval()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    bfl = to_bfl(sd, cfg["num_layers"], cfg["num_single_layers"])
    if name == "dev":
        folder = os.path.join(ROOT, "dev")
        copy.deepcopy(model).to(torch.bfloat16).save_pretrained(os.path.join(folder, "transformer"), safe_serialization=True)
        with open(os.path.join(folder, "model_index.json"), "w") as f:
            json.dump({"_class_name": "FluxPipeline", "_diffusers_version": "0.42.1", "transformer": ["diffusers", "FluxTransformer2DModel"]}, f, indent=2)
        stored = {}
        for k, v in bfl.items():
            e5 = k.endswith(("query_norm.scale", "key_norm.scale")) or k.startswith("final_layer.")
            stored[k] = v.to(torch.float8_e5m2 if e5 else torch.float8_e4m3fn)
            assert torch.equal(stored[k].float(), v), k   # exact: the weights were rounded through these types
        save_file(stored, os.path.join(ROOT, "dev_bfl_fp8.safetensors"))
    else:
        stored = {"model.diffusion_model." + k: v.to(torch.float8_e4m3fn) for k, v in bfl.items()}
        assert all(torch.equal(stored["model.diffusion_model." + k].float(), v) for k, v in bfl.items())
        save_file(stored, os.path.join(ROOT, "schnell_comfy_fp8.safetensors"))

    kw = inputs(cfg, seed + 200)
    check = {}
    if name == "dev":
        fused = [k for k in bfl if ".qkv." in k or ".linear1." in k or k.startswith("final_layer.adaLN_modulation")]
        check["f32_sha256"] = {k: hashlib.sha256(bfl[k].float().contiguous().numpy().tobytes()).hexdigest() for k in sorted(fused)}
    if have_bfl:
        om = bfl_model(cfg)
        om.load_state_dict(bfl, strict=True)
        om.eval()
        n = kw["hidden_states"].shape[0]
        out_o = om(kw["hidden_states"], kw["img_ids"][None].repeat(n, 1, 1), kw["encoder_hidden_states"], kw["txt_ids"][None].repeat(n, 1, 1),
                   kw["timestep"], kw["pooled_projections"], kw.get("guidance"))
        out_d = model(**kw).sample
        rel = (out_o - out_d).norm() / out_d.norm()
        check.update({"bfl_vs_diffusers_rel_l2": float(rel), "max_abs": float((out_o - out_d).abs().max())})
        print(name, "BFL vs diffusers forward:", check["bfl_vs_diffusers_rel_l2"], check["max_abs"])
    dump_diffusers(model, kw, os.path.join(ROOT, name + "_reference.h5"), "flux", modules=traced_modules(cfg, fine=name == "dev"))
    return model, check


@torch.no_grad()
def sampling(models, seed):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    g = torch.Generator().manual_seed(seed)
    n, tokens, h, w = 2, 5, 4, 4
    cfg = CONFIGS["dev"]
    y = torch.randn(n, tokens, cfg["joint_attention_dim"], generator=g)
    pooled = torch.randn(n, cfg["pooled_projection_dim"], generator=g)
    noise = torch.randn(n, cfg["in_channels"] // 4, h, w, generator=g)
    write_h5(os.path.join(ROOT, "text.h5"), encoder_hidden_states=y.numpy(), pooled_projections=pooled.numpy())
    write_h5(os.path.join(ROOT, "noise.h5"), noise=noise.numpy())
    schedulers = {
        # black-forest-labs/FLUX.1-dev and -schnell scheduler/scheduler_config.json
        "dev": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                               base_image_seq_len=256, max_image_seq_len=4096),
        "schnell": FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False, base_shift=0.5, max_shift=1.15,
                                                   base_image_seq_len=256, max_image_seq_len=4096),
    }
    for name, model in models.items():
        pipe = FluxPipeline(scheduler=schedulers[name], vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                            transformer=model)
        packed = FluxPipeline._pack_latents(noise.clone(), n, noise.shape[1], h, w)
        out = pipe(prompt_embeds=y, pooled_prompt_embeds=pooled, num_inference_steps=4, guidance_scale=3.5, height=h * 8, width=w * 8,
                   latents=packed, output_type="latent", return_dict=True).images
        latents = FluxPipeline._unpack_latents(out, h * 8, w * 8, 8)
        write_h5(os.path.join(ROOT, name + "_latents.h5"), latents=latents.float().numpy())
        print(name, "pipeline sigmas:", pipe.scheduler.sigmas.tolist())


@torch.no_grad()
def published_counts(have_bfl):
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    out = {}
    for name, guidance in (("FLUX.1-dev", True), ("FLUX.1-schnell", False)):
        with torch.device("meta"):
            sd = FluxTransformer2DModel(guidance_embeds=guidance).state_dict()
        entry = {"diffusers": {"tensors": len(sd), "parameters": sum(v.numel() for v in sd.values())}}
        if have_bfl:
            cfg = dict(patch_size=1, in_channels=64, attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                       pooled_projection_dim=768, axes_dims_rope=(16, 56, 56), num_layers=19, num_single_layers=38, guidance_embeds=guidance)
            with torch.device("meta"):
                osd = bfl_model(cfg).state_dict()
            entry["original"] = {"tensors": len(osd), "parameters": sum(v.numel() for v in osd.values())}
        out[name] = entry
    with torch.device("meta"):
        vsd = AutoencoderKL(down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512],
                            layers_per_block=2, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False).state_dict()
    entry = {"diffusers": {"tensors": len(vsd), "parameters": sum(v.numel() for v in vsd.values())}}
    if have_bfl:
        from flux.modules.autoencoder import AutoEncoder, AutoEncoderParams
        with torch.device("meta"):
            asd = AutoEncoder(AutoEncoderParams(resolution=256, in_channels=3, ch=128, out_ch=3, ch_mult=[1, 2, 4, 4], num_res_blocks=2,
                                                z_channels=16, scale_factor=0.3611, shift_factor=0.1159)).state_dict()
        entry["original"] = {"tensors": len(asd), "parameters": sum(v.numel() for v in asd.values())}
    out["flux-vae"] = entry
    with open(os.path.join(ROOT, "published_counts.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flux-src", help="the src/ folder of a black-forest-labs/flux checkout")
    a = ap.parse_args()
    if a.flux_src:
        sys.path.insert(0, a.flux_src)
    os.makedirs(ROOT, exist_ok=True)
    torch.manual_seed(0)
    models, checks = {}, {}
    for name, seed in (("dev", 41), ("schnell", 43)):
        models[name], checks[name] = make(name, bool(a.flux_src), seed)
    with open(os.path.join(ROOT, "bfl_check.json"), "w") as f:
        json.dump(checks, f, indent=1, sort_keys=True)
    sampling(models, seed=47)
    published_counts(bool(a.flux_src))


if __name__ == "__main__":
    main()

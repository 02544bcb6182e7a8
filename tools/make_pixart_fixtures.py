#!/usr/bin/env python3
"""Writes the PixArt test fixtures (Tests/Fixtures/pixart/) with the real producers.

Two small PixArt transformers with random weights (non-zero adaLN tables), made with diffusers'
PixArtTransformer2DModel and mirrored in the original PixArt-alpha code:
  alpha: micro-conditions (resolution, aspect ratio) as PixArt-alpha 1024-MS, interpolation 2,
         the original PixArtMS class
  sigma: no micro-conditions, interpolation 0.5, the original PixArt class
For each:
  <name>/transformer/{config.json, diffusion_pytorch_model.safetensors}   diffusers save_pretrained
  sigma_sharded/     the sigma transformer saved by diffusers in 50 kB shards with an index
  <name>_original.pth     {"state_dict": ...} in the original layout (torch.save), as the releases ship
  <name>_reference.h5     diffusers reference activations (tools/dump_reference.py dump_diffusers)
  <name>_reference_perturbed_block1.h5   the same inputs through a copy whose block 1 MLP is perturbed
  <name>_original_check.json             how far the original code's forward is from diffusers'
sigma only (sampling; diffusers' pipeline passes micro-conditions only at sample_size 128):
  captions.h5 (/encoder_hidden_states, /encoder_attention_mask), captions_negative.h5 (plus
  /negative_* = the null caption under the prompt mask), noise.h5 (/noise), and
  sigma_ddim_latents.h5 (/latents): diffusers' PixArtAlphaPipeline with a DDIMScheduler
  (DiT's linear betas, 10 steps, guidance 4.5) from that noise and those captions.

Usage (torch, diffusers, h5py, timm, einops; see CONTRIBUTING.md):
    python tools/make_pixart_fixtures.py --pixart-src DIR
DIR holds the original code (the `diffusion/` folder of a PixArt-alpha/PixArt-alpha checkout). It
is imported with stand-ins for its training-only dependencies (mmcv's registry, the logger) and
with xformers' attention replaced by the same computation in plain torch (block-diagonal masks
become -inf biases), so it runs on a CPU. Without --pixart-src the original-code checks are skipped.
"""
import argparse
import copy
import importlib.util
import json
import os
import sys
import types

import h5py
import numpy as np
import torch
import diffusers  # noqa: F401  (imported before the xformers stand-in below is installed)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_reference import dump_diffusers  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "pixart")

CONFIGS = {
    # name: diffusers config, caption tokens of the null caption
    "alpha": (dict(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8, num_layers=2,
                   cross_attention_dim=24, sample_size=8, patch_size=2, caption_channels=16, interpolation_scale=2,
                   use_additional_conditions=True, norm_eps=1e-6), 8),
    "sigma": (dict(num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=8, num_layers=2,
                   cross_attention_dim=24, sample_size=16, patch_size=2, caption_channels=16, interpolation_scale=0.5,
                   use_additional_conditions=False, norm_eps=1e-6), 12),
}


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if "scale_shift_table" in name else (0.05 if p.ndim > 1 else 0.02)
            p.copy_(torch.randn(p.shape, generator=g) * scale)


# --- the original code, importable on a CPU -----------------------------------------------------

class _BlockDiagonalMask:
    def __init__(self, q_seqlen, kv_seqlen):
        self.q_seqlen, self.kv_seqlen = list(q_seqlen), list(kv_seqlen)

    @staticmethod
    def from_seqlens(q_seqlen, kv_seqlen=None):
        return _BlockDiagonalMask(q_seqlen, kv_seqlen if kv_seqlen is not None else q_seqlen)

    def bias(self):
        m, n = sum(self.q_seqlen), sum(self.kv_seqlen)
        b = torch.full((m, n), float("-inf"))
        qi = ki = 0
        for a, c in zip(self.q_seqlen, self.kv_seqlen):
            b[qi:qi + a, ki:ki + c] = 0
            qi, ki = qi + a, ki + c
        return b


def _memory_efficient_attention(q, k, v, p=0.0, attn_bias=None):
    """xformers.ops.memory_efficient_attention in plain torch: q, k, v are [B, M, H, K]."""
    q, k, v = (t.permute(0, 2, 1, 3).float() for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    if isinstance(attn_bias, _BlockDiagonalMask):
        scores = scores + attn_bias.bias()
    elif attn_bias is not None:
        scores = scores + attn_bias.reshape(scores.shape)
    return (scores.softmax(-1) @ v).permute(0, 2, 1, 3).contiguous()


def load_original_code(src):
    """Imports diffusion.model.nets.{PixArt_blocks, PixArt, PixArtMS} from `src` with stand-ins."""
    def package(name, path=None):
        m = types.ModuleType(name)
        m.__path__ = [path] if path else []
        sys.modules[name] = m
        return m

    package("diffusion", os.path.join(src, "diffusion"))
    package("diffusion.model", os.path.join(src, "diffusion", "model"))
    package("diffusion.model.nets", os.path.join(src, "diffusion", "model", "nets"))
    package("diffusion.utils")
    builder = types.ModuleType("diffusion.model.builder")
    builder.MODELS = types.SimpleNamespace(register_module=lambda *a, **k: (lambda f: f))
    sys.modules["diffusion.model.builder"] = builder
    utils = types.ModuleType("diffusion.model.utils")
    utils.auto_grad_checkpoint = lambda module, *args, **kwargs: module(*args, **kwargs)
    utils.to_2tuple = lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x)
    utils.add_decomposed_rel_pos = None
    sys.modules["diffusion.model.utils"] = utils
    logger = types.ModuleType("diffusion.utils.logger")
    logger.get_root_logger = lambda *a, **k: None
    sys.modules["diffusion.utils.logger"] = logger
    xformers = package("xformers")
    ops = types.ModuleType("xformers.ops")
    ops.memory_efficient_attention = _memory_efficient_attention
    ops.fmha = types.SimpleNamespace(BlockDiagonalMask=_BlockDiagonalMask)
    xformers.ops = ops
    sys.modules["xformers.ops"] = ops
    mods = {}
    for name in ["PixArt_blocks", "PixArt", "PixArtMS"]:
        full = "diffusion.model.nets." + name
        spec = importlib.util.spec_from_file_location(full, os.path.join(src, "diffusion", "model", "nets", name + ".py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[full] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods


def original_model(mods, cfg, tokens):
    d = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    cls = mods["PixArtMS"].PixArtMS if cfg["use_additional_conditions"] else mods["PixArt"].PixArt
    return cls(input_size=cfg["sample_size"], patch_size=cfg["patch_size"], in_channels=cfg["in_channels"], hidden_size=d,
               depth=cfg["num_layers"], num_heads=cfg["num_attention_heads"], caption_channels=cfg["caption_channels"],
               lewei_scale=cfg["interpolation_scale"], model_max_length=tokens, pred_sigma=True)


# --- diffusers -> original layout (PixArt-alpha tools/convert_pixart_alpha_to_diffusers.py, reversed) ---

def to_original(sd, depth, micro):
    o = {}
    ren = [("pos_embed.proj.", "x_embedder.proj."), ("caption_projection.linear_1.", "y_embedder.y_proj.fc1."),
           ("caption_projection.linear_2.", "y_embedder.y_proj.fc2."),
           ("adaln_single.emb.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
           ("adaln_single.emb.timestep_embedder.linear_2.", "t_embedder.mlp.2."), ("adaln_single.linear.", "t_block.1."),
           ("proj_out.", "final_layer.linear.")]
    if micro:
        ren += [("adaln_single.emb.resolution_embedder.linear_1.", "csize_embedder.mlp.0."),
                ("adaln_single.emb.resolution_embedder.linear_2.", "csize_embedder.mlp.2."),
                ("adaln_single.emb.aspect_ratio_embedder.linear_1.", "ar_embedder.mlp.0."),
                ("adaln_single.emb.aspect_ratio_embedder.linear_2.", "ar_embedder.mlp.2.")]
    for a, b in ren:
        for s in ("weight", "bias"):
            o[b + s] = sd[a + s].clone()
    o["final_layer.scale_shift_table"] = sd["scale_shift_table"].clone()
    for i in range(depth):
        t, b = "transformer_blocks.%d." % i, "blocks.%d." % i
        o[b + "scale_shift_table"] = sd[t + "scale_shift_table"].clone()
        for s in ("weight", "bias"):
            o[b + "attn.qkv." + s] = torch.cat([sd[t + "attn1.to_%s.%s" % (x, s)] for x in "qkv"])
            o[b + "attn.proj." + s] = sd[t + "attn1.to_out.0." + s].clone()
            o[b + "cross_attn.q_linear." + s] = sd[t + "attn2.to_q." + s].clone()
            o[b + "cross_attn.kv_linear." + s] = torch.cat([sd[t + "attn2.to_k." + s], sd[t + "attn2.to_v." + s]])
            o[b + "cross_attn.proj." + s] = sd[t + "attn2.to_out.0." + s].clone()
            o[b + "mlp.fc1." + s] = sd[t + "ff.net.0.proj." + s].clone()
            o[b + "mlp.fc2." + s] = sd[t + "ff.net.2." + s].clone()
    return o


def inputs(cfg, tokens, seed, batch=2):
    g = torch.Generator().manual_seed(seed)
    s = cfg["sample_size"]
    x = torch.randn(batch, cfg["in_channels"], s, s, generator=g)
    y = torch.randn(batch, tokens, cfg["caption_channels"], generator=g)
    mask = torch.ones(batch, tokens)
    mask[0, tokens - 2:] = 0
    mask[1, tokens // 2:] = 0
    t = torch.tensor([999, 250], dtype=torch.long)[:batch]
    kw = {"hidden_states": x, "encoder_hidden_states": y, "timestep": t, "encoder_attention_mask": mask}
    if cfg["use_additional_conditions"]:
        kw["resolution"] = torch.tensor([[s * 8.0, s * 8.0]] * batch)
        kw["aspect_ratio"] = torch.tensor([[1.0]] * batch)
    return kw


def write_h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for k, v in datasets.items():
            f.create_dataset(k, data=v)


@torch.no_grad()
def make(name, mods, seed):
    from diffusers import PixArtTransformer2DModel
    cfg, tokens = CONFIGS[name]
    model = PixArtTransformer2DModel(**cfg)
    randomize(model, seed)
    model.eval()
    folder = os.path.join(ROOT, name, "transformer")
    model.save_pretrained(folder, safe_serialization=True)
    if name == "sigma":
        # The same weights as diffusers shards them (an index and several files).
        model.save_pretrained(os.path.join(ROOT, "sigma_sharded"), safe_serialization=True, max_shard_size="50KB")

    sd = model.state_dict()
    g = torch.Generator().manual_seed(seed + 100)
    null = torch.randn(tokens, cfg["caption_channels"], generator=g) / cfg["caption_channels"] ** 0.5
    orig = to_original(sd, cfg["num_layers"], cfg["use_additional_conditions"])
    orig["y_embedder.y_embedding"] = null
    kw = inputs(cfg, tokens, seed + 200)
    check = {}
    if mods is not None:
        om = original_model(mods, cfg, tokens)
        orig["pos_embed"] = om.state_dict()["pos_embed"].clone()   # the original's own fixed buffer
        om.load_state_dict(orig, strict=True)
        om.eval()
        # The original forward: y [N, 1, L, C], mask [N, 1, 1, L], micro-conditions through data_info.
        args = dict(mask=kw["encoder_attention_mask"][:, None, None, :].long())
        if cfg["use_additional_conditions"]:
            args["data_info"] = {"img_hw": kw["resolution"], "aspect_ratio": kw["aspect_ratio"]}
        out_o = om(kw["hidden_states"], kw["timestep"].float(), kw["encoder_hidden_states"][:, None], **args)
        added = {k: kw[k] for k in ("resolution", "aspect_ratio") if k in kw}
        out_d = model(kw["hidden_states"], kw["encoder_hidden_states"], kw["timestep"], added_cond_kwargs=added or {"resolution": None, "aspect_ratio": None},
                      encoder_attention_mask=kw["encoder_attention_mask"]).sample
        diff = (out_o - out_d).norm() / out_d.norm()
        check = {"original_vs_diffusers_rel_l2": float(diff), "max_abs": float((out_o - out_d).abs().max())}
        print(name, "original vs diffusers forward:", check)
    else:
        from diffusers.models.embeddings import get_2d_sincos_pos_embed
        gs = cfg["sample_size"] // cfg["patch_size"]
        orig["pos_embed"] = torch.as_tensor(get_2d_sincos_pos_embed(cfg["num_attention_heads"] * cfg["attention_head_dim"], gs,
                                                                    base_size=gs, interpolation_scale=cfg["interpolation_scale"],
                                                                    output_type="pt")).float()[None]
    torch.save({"state_dict": orig}, os.path.join(ROOT, name + "_original.pth"))
    with open(os.path.join(ROOT, name + "_original_check.json"), "w") as f:
        json.dump(check, f, indent=1, sort_keys=True)

    # The modules DiTKit traces (and a few it does not, to be listed as skipped); the perturbed
    # file only needs the blocks.
    blocks = ["transformer_blocks.%d" % i for i in range(cfg["num_layers"])]
    fine = [b + "." + m for b in blocks for m in ("norm1", "attn1", "attn2", "norm2", "ff")]
    top = ["pos_embed", "adaln_single", "adaln_single.emb", "caption_projection", "norm_out", "proj_out", "transformer_blocks.0.ff.net.0"]
    dump_diffusers(model, kw, os.path.join(ROOT, name + "_reference.h5"), "pixart", modules=set(top + blocks + fine))
    bad = copy.deepcopy(model)
    bad.transformer_blocks[1].ff.net[2].weight.mul_(-1.5)
    dump_diffusers(bad, kw, os.path.join(ROOT, name + "_reference_perturbed_block1.h5"), "pixart", modules=set(blocks + ["proj_out"]))
    return model, null, tokens, cfg


@torch.no_grad()
def sampling(model, null, tokens, cfg, seed):
    from diffusers import DDIMScheduler, PixArtAlphaPipeline
    g = torch.Generator().manual_seed(seed)
    n = 2
    y = torch.randn(n, tokens, cfg["caption_channels"], generator=g)
    mask = torch.ones(n, tokens)
    mask[0, tokens - 3:] = 0
    mask[1, 2:] = 0
    s = cfg["sample_size"]
    noise = torch.randn(n, cfg["in_channels"], s, s, generator=g)
    write_h5(os.path.join(ROOT, "captions.h5"), encoder_hidden_states=y.numpy(), encoder_attention_mask=mask.numpy())
    neg = null[None].repeat(n, 1, 1)
    write_h5(os.path.join(ROOT, "captions_negative.h5"), encoder_hidden_states=y.numpy(), encoder_attention_mask=mask.numpy(),
             negative_encoder_hidden_states=neg.numpy(), negative_encoder_attention_mask=mask.numpy())
    write_h5(os.path.join(ROOT, "noise.h5"), noise=noise.numpy())
    # DiT's diffusion: linear betas 1e-4..0.02 over 1000 steps; DDIM 10 steps = stride 100 ("ddim10").
    sched = DDIMScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear",
                          clip_sample=False, set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading",
                          prediction_type="epsilon")
    pipe = PixArtAlphaPipeline(tokenizer=None, text_encoder=None, vae=None, transformer=model, scheduler=sched)
    latents = pipe(negative_prompt=None, prompt_embeds=y, prompt_attention_mask=mask, negative_prompt_embeds=neg, negative_prompt_attention_mask=mask,
                   num_inference_steps=10, guidance_scale=4.5, latents=noise.clone(), height=s * 8, width=s * 8,
                   use_resolution_binning=False, output_type="latent", return_dict=True).images
    write_h5(os.path.join(ROOT, "sigma_ddim_latents.h5"), latents=latents.float().numpy())
    print("pipeline timesteps:", sched.timesteps.tolist())


PUBLISHED = {
    # DiTKit name: diffusers config of the release (PixArt-alpha/*, PixArt-alpha/PixArt-Sigma-*), original class, caption tokens
    "PixArt-XL/2-256": (dict(sample_size=32), "PixArt", 120, 1.0),
    "PixArt-XL/2-512": (dict(sample_size=64), "PixArt", 120, 1.0),
    "PixArt-XL/2-1024-MS": (dict(sample_size=128), "PixArtMS", 120, 2.0),
    "PixArt-Sigma-XL/2-512": (dict(sample_size=64, interpolation_scale=1, use_additional_conditions=False), "PixArt", 300, 1.0),
    "PixArt-Sigma-XL/2-1024": (dict(sample_size=128, interpolation_scale=2, use_additional_conditions=False), "PixArt", 300, 2.0),
    "PixArt-Sigma-XL/2-2K": (dict(sample_size=256, interpolation_scale=4, use_additional_conditions=False), "PixArt", 300, 4.0),
}


@torch.no_grad()
def published_counts(mods):
    """Tensor and parameter counts of the published configurations, from diffusers' class (on the
    meta device) and, with the original code, from its own classes (the .pth layout)."""
    from diffusers import PixArtTransformer2DModel
    out = {}
    for name, (cfg, cls, tokens, lewei) in PUBLISHED.items():
        with torch.device("meta"):
            m = PixArtTransformer2DModel(caption_channels=4096, **cfg)
        sd = m.state_dict()
        entry = {"diffusers": {"tensors": len(sd), "parameters": sum(v.numel() for v in sd.values())}}
        if mods is not None:
            # The original initialisation reads values (.item()), so it runs on the CPU.
            om = getattr(mods[cls], cls)(input_size=cfg["sample_size"], lewei_scale=lewei, model_max_length=tokens)
            osd = om.state_dict()
            entry["original"] = {"tensors": len(osd), "parameters": sum(v.numel() for v in osd.values())}
        out[name] = entry
    with open(os.path.join(ROOT, "published_counts.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pixart-src", help="folder holding the original PixArt-alpha `diffusion/` package")
    a = ap.parse_args()
    os.makedirs(ROOT, exist_ok=True)
    mods = load_original_code(a.pixart_src) if a.pixart_src else None
    make("alpha", mods, seed=11)
    # diffusers' pipeline passes micro-conditions only at sample_size 128, so the loop runs on sigma.
    sigma = make("sigma", mods, seed=23)
    sampling(*sigma, seed=31)
    published_counts(mods)


if __name__ == "__main__":
    main()

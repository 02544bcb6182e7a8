#!/usr/bin/env python3
"""Full-size stand-ins for the official checkpoints, written with real torch.save (never committed).

    python Benchmarks/make_standins.py OUTDIR

- DiT-XL-2-256x256.pt: laid out exactly as the official file: a plain state dict (no wrapper) with the
  official names in state_dict() order, 292 float32 tensors, 675,129,632 parameters, pos_embed the real
  sin-cos table, every other tensor random (seeded).
- sd-vae-ft-ema/: a diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors),
  248 tensors, 83,653,863 parameters, random weights (seeded).
- flux-blocks/: a diffusers FluxTransformer2DModel folder at FLUX.1-dev's width (3072, 24 heads of 128,
  guidance embedding) with one double-stream and one single-stream block, float32, random weights
  (seeded): the block benchmarks run it through DiTKit and diffusers.
"""
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))


def dit_xl2(path):
    from dit_reference import DiT
    torch.manual_seed(0)
    with torch.device("meta"):
        shapes = DiT(input_size=32, patch_size=2, hidden_size=1152, depth=28, num_heads=16).state_dict()
    from dit_reference import get_2d_sincos_pos_embed
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, t in shapes.items():
        if name == "pos_embed":
            sd[name] = torch.from_numpy(get_2d_sincos_pos_embed(1152, 16)).float().unsqueeze(0)
        else:
            fan_in = t.shape[1] if t.dim() > 1 else 1
            scale = 0.02 if t.dim() == 1 else 1.0 / math.sqrt(fan_in * (t[0].numel() // fan_in if t.dim() > 2 else 1))
            sd[name] = torch.randn(t.shape, generator=g) * scale
    n = sum(v.numel() for v in sd.values())
    assert len(sd) == 292 and n == 675_129_632, (len(sd), n)
    torch.save(sd, path)


def sd_vae(folder):
    from diffusers import AutoencoderKL
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                        layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=256)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p[0].numel()))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    n = sum(p.numel() for p in vae.parameters())
    assert len(vae.state_dict()) == 248 and n == 83_653_863, (len(vae.state_dict()), n)
    vae.save_pretrained(folder, safe_serialization=True)


def flux_blocks(folder):
    from diffusers import FluxTransformer2DModel
    torch.manual_seed(2)
    m = FluxTransformer2DModel(num_layers=1, num_single_layers=1, guidance_embeds=True)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.01 + (1.0 if name.endswith("norm_q.weight") or name.endswith("norm_k.weight")
                                                                     or "norm_added" in name else 0.0))
    m.save_pretrained(folder, safe_serialization=True)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "bench-data"
    os.makedirs(out, exist_ok=True)
    p = os.path.join(out, "DiT-XL-2-256x256.pt")
    if not os.path.exists(p):
        dit_xl2(p + ".tmp")
        os.rename(p + ".tmp", p)
    v = os.path.join(out, "sd-vae-ft-ema")
    if not os.path.exists(os.path.join(v, "diffusion_pytorch_model.safetensors")):
        sd_vae(v)
    f = os.path.join(out, "flux-blocks")
    if not os.path.exists(os.path.join(f, "config.json")):
        flux_blocks(f)
    print("stand-ins in", out)

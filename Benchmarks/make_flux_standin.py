#!/usr/bin/env python3
"""A full-size FLUX.1-dev stand-in in Black Forest Labs' layout (never committed).

    python Benchmarks/make_flux_standin.py OUTDIR

Writes OUTDIR/flux1-dev.safetensors: the tensor list, shapes, order and dtype of BFL's
flux1-dev.safetensors (780 BF16 tensors, 11,901,408,320 parameters: double_blocks.N.img_attn.qkv,
single_blocks.N.linear1, final_layer.adaLN_modulation.1 as [shift, scale], ...), the names and shapes
taken from diffusers' FluxTransformer2DModel (on the meta device) through the inverse of diffusers'
convert_flux_transformer_checkpoint_to_diffusers (tools/make_flux_fixtures.py `to_bfl`), with random
values (seeded): weights N(0, 1/fan_in), biases N(0, 0.01²), RMSNorm scales 1 + N(0, 0.01²).

The file (23.8 GB) is written a tensor at a time (header first, then each tensor's bytes), so the
generator needs about one tensor's memory, not the model's.

Beside it, for `sample`: OUTDIR/flux-vae/ (diffusers AutoencoderKL with FLUX.1's configuration, 16
latent channels, scaling 0.3611, shift 0.1159, random values) and OUTDIR/flux-text.h5 (one prompt's
features: T5 [1, 512, 4096] and CLIP pooled [1, 768], random).
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from make_flux_fixtures import to_bfl  # noqa: E402

EXPECTED = (780, 11_901_408_320)


def shapes():
    from diffusers import FluxTransformer2DModel
    with torch.device("meta"):
        m = FluxTransformer2DModel(guidance_embeds=True)
        sd = to_bfl(m.state_dict(), 19, 38)
    return {k: list(v.shape) for k, v in sd.items()}


def write(path):
    table = shapes()
    names = sorted(table)
    assert (len(names), sum(torch.Size(s).numel() for s in table.values())) == EXPECTED
    header, offset = {}, 0
    for n in names:
        size = torch.Size(table[n]).numel() * 2
        header[n] = {"dtype": "BF16", "shape": table[n], "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt", "ditkit.standin": "FLUX.1-dev, random values"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    g = torch.Generator().manual_seed(0)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for k, n in enumerate(names):
            s = table[n]
            if len(s) == 2:
                v = torch.randn(s, generator=g) / s[1] ** 0.5
            elif n.endswith(".scale"):
                v = 1 + 0.01 * torch.randn(s, generator=g)
            else:
                v = 0.01 * torch.randn(s, generator=g)
            f.write(v.to(torch.bfloat16).view(torch.int16).numpy().tobytes())
            if k % 50 == 0:
                print("%d/%d tensors" % (k, len(names)), flush=True)
    os.rename(path + ".tmp", path)


def vae_and_text(out):
    import h5py
    from diffusers import AutoencoderKL
    folder = os.path.join(out, "flux-vae")
    if not os.path.exists(os.path.join(folder, "config.json")):
        torch.manual_seed(3)
        vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                            layers_per_block=2, latent_channels=16, norm_num_groups=32, sample_size=1024,
                            scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
        vae.save_pretrained(folder, safe_serialization=True)
    text = os.path.join(out, "flux-text.h5")
    if not os.path.exists(text):
        g = torch.Generator().manual_seed(4)
        with h5py.File(text + ".tmp", "w") as f:
            f["encoder_hidden_states"] = torch.randn(1, 512, 4096, generator=g).numpy()
            f["pooled_projections"] = torch.randn(1, 768, generator=g).numpy()
        os.rename(text + ".tmp", text)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "bench-data"
    os.makedirs(out, exist_ok=True)
    p = os.path.join(out, "flux1-dev.safetensors")
    if not os.path.exists(p):
        write(p)
    vae_and_text(out)
    print("stand-in:", p)

#!/usr/bin/env python3
"""Writes PyTorch reference activations for `ditkit verify --reference`.

Point it at your own PyTorch model and inputs. The HDF5 layout (one file per check):

    /inputs/x  float32 [N,4,H,W]   /inputs/t float32 [N]   /inputs/y int64 [N]     (DiT)
    /inputs/z  float32 [N,4,h,w]   (argument of decode)                             (VAE decoder)
    /inputs/image float32 [N,3,H,W]                                                 (VAE encoder)
    /layers/<module path>  float32, the module's output for the whole batch, PyTorch layout
    /output                float32, the model's final output
    root attribute `model`: the configuration name (e.g. DiT-XL/2, sd-vae)

Families whose reference implementation is diffusers (PixArt, SD3, FLUX) use that model's
`forward` keyword arguments and module paths:

    /inputs/<name>         the keyword arguments of forward (hidden_states, encoder_hidden_states,
                           timestep, encoder_attention_mask, ...; added_cond_kwargs entries by name)
    /layers/<module path>  every diffusers module's output; a tuple output as <path>.0, <path>.1, ...
    /output                forward(...).sample
    root attribute `model`: the family name (pixart, sd3, flux)

Library use:
    from dump_reference import dump_dit, dump_vae_decode, dump_vae_encode, dump_diffusers
    dump_dit(model, x, t, y, "ref.h5", model_name="DiT-XL/2")
    dump_diffusers(transformer, {"hidden_states": x, "encoder_hidden_states": y, "timestep": t}, "ref.h5", "pixart")

Command line (the model is built from a checkpoint):
    python tools/dump_reference.py dit DiT-XL-2-256x256.pt -o ref.h5 --model DiT-XL/2 [--dit-repo PATH]
    python tools/dump_reference.py vae-decode path/to/sd-vae-ft-ema -o ref.h5 --size 256
    python tools/dump_reference.py vae-encode path/to/sd-vae-ft-ema -o ref.h5 --size 256

With --dit-repo pointing at a clone of facebookresearch/DiT, its own models.py is used; otherwise
tools/dit_reference.py (written to the same semantics, on timm's modules).
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

DIT_LAYERS = ["x_embedder", "t_embedder", "y_embedder"]
VAE_DECODER_LAYERS = ["post_quant_conv", "decoder.conv_in", "decoder.mid_block"]
VAE_ENCODER_LAYERS = ["encoder.conv_in"]


def _capture(model, names):
    """Registers forward hooks on the named submodules; returns (outputs dict, handles)."""
    modules = dict(model.named_modules())
    outputs, handles = {}, []
    for name in names:
        if name not in modules:
            continue
        def hook(_m, _inp, out, name=name):
            outputs[name] = out.detach().float().cpu().numpy()
        handles.append(modules[name].register_forward_hook(hook))
    return outputs, handles


def _write(path, model_name, inputs, layers, output):
    with h5py.File(path, "w") as f:
        f.attrs["model"] = model_name
        for k, v in inputs.items():
            f.create_dataset("inputs/" + k, data=v)
        for k, v in layers.items():
            f.create_dataset("layers/" + k, data=v.astype(np.float32))
        f.create_dataset("output", data=output.astype(np.float32))


def _flatten_output(name, out, into):
    """A module output as float32 arrays: tensors as they are, tuples/lists as name.0, name.1, ...,
    diffusers output objects by their first field."""
    if isinstance(out, torch.Tensor):
        if out.is_floating_point():
            into[name] = out.detach().float().cpu().numpy()
    elif isinstance(out, (tuple, list)):
        for i, o in enumerate(out):
            _flatten_output("%s.%d" % (name, i), o, into)
    elif hasattr(out, "to_tuple"):
        _flatten_output(name, out.to_tuple()[0], into)


@torch.no_grad()
def dump_diffusers(model, inputs, path, model_name, modules=None):
    """Runs model(**inputs) with a hook on every named module (or those in `modules`) and writes
    /inputs/<name> (added_cond_kwargs entries by their own names), /layers/<module path> and
    /output (forward(...).sample). A module called more than once keeps its last output."""
    model.eval()
    outputs, handles = {}, []
    for name, module in model.named_modules():
        if name == "" or (modules is not None and name not in modules):
            continue
        def hook(_m, _inp, out, name=name):
            _flatten_output(name, out, outputs)
        handles.append(module.register_forward_hook(hook))
    kwargs = dict(inputs)
    added = {k: kwargs.pop(k) for k in ("resolution", "aspect_ratio") if k in kwargs}
    if added:
        kwargs["added_cond_kwargs"] = added
    elif "added_cond_kwargs" not in kwargs and getattr(getattr(model, "config", None), "use_additional_conditions", False):
        raise ValueError("this model takes micro-conditions: give resolution and aspect_ratio")
    out = model(**kwargs, return_dict=True).sample
    for h in handles:
        h.remove()
    flat = {}
    for k, v in inputs.items():
        v = v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
        if v.dtype == torch.bool:
            v = v.long()
        flat[k] = v.detach().cpu().numpy() if not v.is_floating_point() else v.detach().float().cpu().numpy()
    _write(path, model_name, flat, outputs, out.float().numpy())


def dit_layer_names(depth, fine=True):
    names = list(DIT_LAYERS)
    for i in range(depth):
        names.append("blocks.%d" % i)
        if fine:
            names += ["blocks.%d.adaLN_modulation" % i, "blocks.%d.attn" % i, "blocks.%d.mlp" % i]
    return names + ["final_layer"]


@torch.no_grad()
def dump_dit(model, x, t, y, path, model_name, fine=True, extra=()):
    """Runs model(x, t, y) with hooks on every DiT module (and any `extra` module paths) and
    writes the reference file."""
    model.eval()
    outputs, handles = _capture(model, dit_layer_names(len(model.blocks), fine) + list(extra))
    out = model(x, t, y)
    for h in handles:
        h.remove()
    _write(path, model_name, {"x": x.float().numpy(), "t": t.float().numpy(), "y": y.long().numpy()}, outputs, out.float().numpy())


def vae_layer_names(vae, part):
    if part == "decoder":
        names = list(VAE_DECODER_LAYERS) + ["decoder.up_blocks.%d" % k for k in range(len(vae.decoder.up_blocks))]
        return names + ["decoder.conv_norm_out", "decoder.conv_out"]
    names = list(VAE_ENCODER_LAYERS) + ["encoder.down_blocks.%d" % k for k in range(len(vae.encoder.down_blocks))]
    return names + ["encoder.mid_block", "encoder.conv_norm_out", "encoder.conv_out", "quant_conv"]


@torch.no_grad()
def dump_vae_decode(vae, z, path, model_name="sd-vae"):
    """Runs vae.decode(z) (z already divided by the scaling factor) and writes the reference file."""
    vae.eval()
    outputs, handles = _capture(vae, vae_layer_names(vae, "decoder"))
    image = vae.decode(z).sample
    for h in handles:
        h.remove()
    _write(path, model_name, {"z": z.float().numpy()}, outputs, image.float().numpy())


@torch.no_grad()
def dump_vae_encode(vae, image, path, model_name="sd-vae"):
    """Runs the encoder to the moments (after quant_conv) and writes the reference file."""
    vae.eval()
    outputs, handles = _capture(vae, vae_layer_names(vae, "encoder"))
    h = vae.encoder(image)
    moments = vae.quant_conv(h) if vae.quant_conv is not None else h
    for hd in handles:
        hd.remove()
    _write(path, model_name, {"image": image.float().numpy()}, outputs, moments.float().numpy())


def _load_dit(checkpoint, model_name, image_size, repo):
    if repo:
        sys.path.insert(0, repo)
        from models import DiT_models  # the official repository's own code
        model = DiT_models[model_name](input_size=image_size // 8)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from dit_reference import DiT
        sizes = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
        size, patch = model_name.split("-")[1].split("/")
        depth, hidden, heads = sizes[size]
        model = DiT(input_size=image_size // 8, patch_size=int(patch), hidden_size=hidden, depth=depth, num_heads=heads)
    sd = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "ema" in sd:
        sd = sd["ema"]
    model.load_state_dict(sd)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["dit", "vae-decode", "vae-encode"])
    ap.add_argument("checkpoint", help="DiT .pt, or a diffusers VAE folder / single file")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--model", default="DiT-XL/2")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--size", type=int, default=256, help="VAE image size in pixels")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dit-repo", help="path to a clone of facebookresearch/DiT")
    ap.add_argument("--coarse", action="store_true", help="DiT: block outputs only (no attn/mlp/adaLN)")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(a.seed)
    if a.kind == "dit":
        model = _load_dit(a.checkpoint, a.model, a.image_size, a.dit_repo)
        s = a.image_size // 8
        x = torch.randn(a.batch, 4, s, s, generator=g)
        t = torch.linspace(999, 0, a.batch).round()
        y = torch.randint(0, 1000, (a.batch,), generator=g)
        y[-1] = 1000
        dump_dit(model, x, t, y, a.output, a.model, fine=not a.coarse)
    else:
        from diffusers import AutoencoderKL
        vae = AutoencoderKL.from_pretrained(a.checkpoint) if os.path.isdir(a.checkpoint) else AutoencoderKL.from_single_file(a.checkpoint)
        if a.kind == "vae-decode":
            z = torch.randn(a.batch, vae.config.latent_channels, a.size // 8, a.size // 8, generator=g)
            dump_vae_decode(vae, z, a.output)
        else:
            image = torch.rand(a.batch, 3, a.size, a.size, generator=g) * 2 - 1
            dump_vae_encode(vae, image, a.output)
    print("wrote", a.output)


if __name__ == "__main__":
    main()

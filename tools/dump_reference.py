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
    python tools/dump_reference.py vae-decode vae-ft-mse-840000-ema-pruned.ckpt -o ref.h5 [--vae-config DIR]

With --dit-repo pointing at a clone of facebookresearch/DiT, its own models.py is used; otherwise
tools/dit_reference.py (written to the same semantics, on timm's modules).

Nothing is downloaded: a diffusers VAE folder carries its config.json, and a single-file VAE is read
with --vae-config (a folder holding config.json, or the file itself) or, without it, the SD VAE's
configuration (sd-vae-kl-f8, scaling 0.18215). A checkpoint that does not fit the model asked for
stops with one line saying what differs, not a traceback.
"""
import argparse
import json
import os
import sys
import tempfile

# Never reach for the Hugging Face Hub: every configuration is local (see above).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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


class Refused(Exception):
    """Input that does not fit: printed as one line, exit 2."""


# The SD VAE (sd-vae-kl-f8) as diffusers' AutoencoderKL configures it: what a single-file VAE is
# read with unless --vae-config says otherwise.
SD_VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "act_fn": "silu",
    "latent_channels": 4, "norm_num_groups": 32, "sample_size": 256, "scaling_factor": 0.18215,
}


def _fit(model, sd, what):
    """Raises Refused naming what differs when the state dict `sd` does not load into `model`."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)}
    missing = sorted(set(want) - set(have))
    unexpected = sorted(set(have) - set(want))
    shapes = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    if not (missing or unexpected or shapes):
        return
    parts = []
    if shapes:
        # The position embedding tells the image size: name it first when it differs.
        k = next((n for n in ("pos_embed", "x_embedder.proj.weight") if n in shapes), shapes[0])
        parts.append("%d of another shape (%s: file %s, model %s)" % (len(shapes), k, list(have[k]), list(want[k])))
    if missing:
        parts.append("%d missing (%s%s)" % (len(missing), missing[0], ", ..." if len(missing) > 1 else ""))
    if unexpected:
        parts.append("%d unexpected (%s%s)" % (len(unexpected), unexpected[0], ", ..." if len(unexpected) > 1 else ""))
    raise Refused("the weights do not fit %s: %s" % (what, "; ".join(parts)))


def _dit_hint(sd):
    """What a DiT state dict looks like (hidden size, depth, patch, image size), for messages."""
    try:
        hidden, _, patch, _ = sd["x_embedder.proj.weight"].shape
        depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        tokens = sd["pos_embed"].shape[1]
        size = int(round(tokens ** 0.5)) * patch * 8
        return "the file holds a DiT of hidden size %d, depth %d, patch %d at %d px" % (hidden, depth, patch, size)
    except (KeyError, AttributeError, ValueError, IndexError):
        return "the file holds no DiT state dict DiTKit recognises"


def _load_dit(checkpoint, model_name, image_size, repo):
    sizes = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}
    try:
        size, patch = model_name.split("-")[1].split("/")
        depth, hidden, heads = sizes[size]
        patch = int(patch)
    except (IndexError, KeyError, ValueError):
        raise Refused("--model %s is not a DiT name (DiT-S/2 ... DiT-XL/8)" % model_name)
    if repo:
        sys.path.insert(0, repo)
        from models import DiT_models  # the official repository's own code
        model = DiT_models[model_name](input_size=image_size // 8)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from dit_reference import DiT
        model = DiT(input_size=image_size // 8, patch_size=patch, hidden_size=hidden, depth=depth, num_heads=heads)
    try:
        sd = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as e:  # torch's own message, on one line
        raise Refused("cannot read the checkpoint: %s" % str(e).strip().splitlines()[0])
    if isinstance(sd, dict) and "ema" in sd:
        sd = sd["ema"]
    if not isinstance(sd, dict):
        raise Refused("not a state dict (a %s)" % type(sd).__name__)
    try:
        _fit(model, sd, "%s at %d px" % (model_name, image_size))
    except Refused as e:
        raise Refused("%s; %s: check --model and --image-size" % (e, _dit_hint(sd)))
    model.load_state_dict(sd)
    return model


def _load_vae(checkpoint, config):
    """A diffusers AutoencoderKL from a folder (its own config.json) or a single file (read with
    `config`: a folder or config.json, else SD_VAE_CONFIG), without any download."""
    from diffusers import AutoencoderKL
    if os.path.isdir(checkpoint):
        if not os.path.exists(os.path.join(checkpoint, "config.json")):
            raise Refused("%s has no config.json (a diffusers VAE folder has one)" % checkpoint)
        return AutoencoderKL.from_pretrained(checkpoint, local_files_only=True)
    with tempfile.TemporaryDirectory() as folder:
        if config is None:
            cfg = SD_VAE_CONFIG
        else:
            path = os.path.join(config, "config.json") if os.path.isdir(config) else config
            try:
                with open(path) as f:
                    cfg = json.load(f)
            except (OSError, ValueError) as e:
                raise Refused("--vae-config %s: %s" % (config, e))
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(cfg, f)
        try:
            return AutoencoderKL.from_single_file(checkpoint, config=folder, local_files_only=True)
        except Exception as e:  # diffusers' message (shape mismatch, unreadable file), on one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            first = first.split(". If you want")[0]   # diffusers' advice to load random weights instead
            which = "--vae-config %s" % config if config else "the SD VAE configuration (pass --vae-config for another)"
            raise Refused("the weights do not load with %s: %s" % (which, first))


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
    ap.add_argument("--vae-config", help="single-file VAE: a folder holding config.json, or the file (default: the SD VAE's)")
    a = ap.parse_args()
    try:
        run(a)
    except Refused as e:
        print("dump_reference.py: %s: %s" % (a.checkpoint, e), file=sys.stderr)
        sys.exit(2)


def run(a):
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
        vae = _load_vae(a.checkpoint, a.vae_config)
        if a.kind == "vae-decode":
            z = torch.randn(a.batch, vae.config.latent_channels, a.size // 8, a.size // 8, generator=g)
            dump_vae_decode(vae, z, a.output)
        else:
            image = torch.rand(a.batch, 3, a.size, a.size, generator=g) * 2 - 1
            dump_vae_encode(vae, image, a.output)
    print("wrote", a.output)


if __name__ == "__main__":
    main()

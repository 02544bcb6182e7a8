#!/usr/bin/env python3
"""Reads a `ditkit export --to gguf` file with ComfyUI-GGUF's own loader and dequantizer, then loads the
state dict they produce into the reference model with strict=True (needs torch and gguf; run locally, the
ComfyUI-GGUF checkout is never committed):

    python tools/check_comfy_gguf.py MODEL.gguf --comfy-gguf DIR [--reference REF.safetensors]
        [--flux-src DIR | --sd3-src DIR]

DIR is a checkout of city96/ComfyUI-GGUF. Its loader.py (`gguf_sd_loader`) and dequant.py
(`dequantize_tensor`, torch dequantization of every block type) run unchanged; ComfyUI itself is not
needed: the three `comfy` modules ops.py imports are stubbed with the base classes it subclasses.

- The loader must accept the file as an image model (`general.architecture` in its IMG_ARCH_LIST) and
  return every tensor with its shape (ggml's dimensions reversed).
- --reference: a float32 safetensors export of the same bundle in the same layout (`ditkit export --to
  safetensors --dequantize [--naming original]`; its `model.diffusion_model.` prefix is ignored): same
  names and shapes; values bit-equal when ComfyUI-GGUF dequantizes in float32 (`dequant_dtype`), and within
  float16 rounding with its default (the block scales' float16 arithmetic).
- --flux-src (the src/ folder of black-forest-labs/flux) or --sd3-src (a Stability-AI/sd3.5 checkout):
  the dequantized state dict loads into BFL's Flux / Stability's MMDiTX with strict=True (ComfyUI's own
  FLUX and SD3 models use these names), sized from the GGUF's `flux.*` / `sd3.*` metadata, and its forward
  equals that of the same model loaded from --reference.
"""
import argparse
import importlib.util
import os
import sys
import types

import torch


def stub_comfy():
    """The names ComfyUI-GGUF's ops.py takes from ComfyUI at import time."""
    comfy = types.ModuleType("comfy")
    ops = types.ModuleType("comfy.ops")

    class manual_cast:
        class Linear(torch.nn.Linear): pass
        class Conv2d(torch.nn.Conv2d): pass
        class Embedding(torch.nn.Embedding): pass
        class LayerNorm(torch.nn.LayerNorm): pass
        class GroupNorm(torch.nn.GroupNorm): pass

    ops.manual_cast = manual_cast
    ops.cast_to = lambda t, dtype, device, non_blocking=False, copy=False: t.to(dtype=dtype, device=device)
    comfy.ops = ops
    comfy.lora = types.ModuleType("comfy.lora")
    comfy.model_management = types.ModuleType("comfy.model_management")
    for name, m in [("comfy", comfy), ("comfy.ops", ops), ("comfy.lora", comfy.lora), ("comfy.model_management", comfy.model_management)]:
        sys.modules[name] = m


def load_comfy_gguf(path):
    """ComfyUI-GGUF's folder as the package `comfy_gguf` (its modules import each other relatively)."""
    spec = importlib.util.spec_from_file_location("comfy_gguf", os.path.join(path, "__init__.py"), submodule_search_locations=[path])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules["comfy_gguf"] = pkg
    spec.loader.exec_module(pkg)
    import comfy_gguf.loader as loader
    import comfy_gguf.dequant as dequant
    return loader, dequant


def metadata(path, arch):
    import gguf
    r = gguf.GGUFReader(path)
    cfg = {}
    for name, field in r.fields.items():
        if name.startswith(arch + "."):
            cfg[name[len(arch) + 1:]] = field.contents()
    return cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--comfy-gguf", required=True)
    ap.add_argument("--reference")
    ap.add_argument("--flux-src")
    ap.add_argument("--sd3-src")
    a = ap.parse_args()
    stub_comfy()
    loader, dequant = load_comfy_gguf(a.comfy_gguf)
    sd, arch = loader.gguf_sd_loader(a.gguf, return_arch=True)
    types_seen = sorted({getattr(t.tensor_type, "name", str(t.tensor_type)) for t in sd.values()})
    print("ComfyUI-GGUF loader: architecture %s, %d tensors (%s)" % (arch, len(sd), ", ".join(types_seen)))
    # ComfyUI-GGUF dequantizes in the block scales' float16 unless told otherwise; in float32 its
    # values must be gguf-py's (and DiTKit's) exactly, in float16 within that rounding.
    values = {k: dequant.dequantize_tensor(t, dtype=torch.float32, dequant_dtype=torch.float32) for k, t in sd.items()}
    half = {k: dequant.dequantize_tensor(t, dtype=torch.float32) for k, t in sd.items()}
    for k, v in values.items():
        assert tuple(v.shape) == tuple(sd[k].tensor_shape), (k, v.shape, sd[k].tensor_shape)
    ref = None
    if a.reference:
        from safetensors.torch import load_file
        prefix = "model.diffusion_model."
        ref = {(k[len(prefix):] if k.startswith(prefix) else k): v.float() for k, v in load_file(a.reference).items()}
        assert set(ref) == set(values), ("names differ", sorted(set(ref) ^ set(values))[:10])
        worst, inexact = 0.0, []
        for k, v in values.items():
            assert v.shape == ref[k].shape, (k, v.shape, ref[k].shape)
            d = (v - ref[k]).abs().max().item() if v.numel() else 0.0
            if d > 0:
                inexact.append(k)
            worst = max(worst, d)
        print("values against the reference: %d of %d tensors bit-equal, largest difference %.3g" % (len(values) - len(inexact), len(values), worst))
        assert worst == 0, (worst, inexact[:5])
        rel = max(((half[k] - ref[k]).norm() / ref[k].norm()).item() if ref[k].norm() > 0 else 0.0 for k in ref)
        print("ComfyUI-GGUF's default float16 dequantization: largest relative L2 difference %.3g" % rel)
        assert rel < 1e-3, rel
    model = None
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if a.flux_src:
        assert arch == "flux", arch
        sys.path.insert(0, a.flux_src)
        from make_flux_fixtures import bfl_model, inputs
        cfg = metadata(a.gguf, "flux")
        build = lambda: bfl_model(cfg)
        kw = inputs(cfg, seed=0)
        n = kw["hidden_states"].shape[0]
        run = lambda m: m(kw["hidden_states"], kw["img_ids"][None].repeat(n, 1, 1), kw["encoder_hidden_states"],
                          kw["txt_ids"][None].repeat(n, 1, 1), kw["timestep"], kw["pooled_projections"], kw.get("guidance"))
        model = "BFL's Flux"
    elif a.sd3_src:
        assert arch == "sd3", arch
        from make_sd3_fixtures import load_original_code, original_model
        mod = load_original_code(a.sd3_src)
        cfg = metadata(a.gguf, "sd3")
        cfg["qk_norm"] = cfg.get("qk_norm")
        cfg["dual_attention_layers"] = list(cfg.get("dual_attention_layers", []))
        build = lambda: original_model(mod, cfg)
        g = torch.Generator().manual_seed(0)
        s = min(cfg["sample_size"], cfg["pos_embed_max_size"] * cfg["patch_size"])
        kw = {"x": torch.randn(2, cfg["in_channels"], s, s, generator=g), "t": torch.tensor([999.0, 10.0]),
              "context": torch.randn(2, 7, cfg["joint_attention_dim"], generator=g),
              "y": torch.randn(2, cfg["pooled_projection_dim"], generator=g)}
        run = lambda m: m(kw["x"], kw["t"], y=kw["y"], context=kw["context"])
        model = "Stability's MMDiTX"
    if model:
        m = build()
        m.load_state_dict(values, strict=True)
        m = m.float().eval()
        with torch.no_grad():
            out = run(m)
        print("the dequantized state dict loads into %s with strict=True" % model)
        if ref is not None:
            m2 = build()
            m2.load_state_dict(ref, strict=True)
            m2 = m2.float().eval()
            with torch.no_grad():
                out2 = run(m2)
            rel = ((out - out2).norm() / out2.norm()).item()
            print("forward from ComfyUI-GGUF's tensors vs from the reference export: rel L2 %.3e" % rel)
            assert rel <= 1e-6, rel


if __name__ == "__main__":
    main()

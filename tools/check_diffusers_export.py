#!/usr/bin/env python3
"""Loads `ditkit export --to diffusers` folders with diffusers itself (needs torch + diffusers; CI
checks the committed key lists instead). Fails on any missing or unexpected key and compares outputs:

    python tools/check_diffusers_export.py dit  EXPORTED_DIT_FOLDER  OFFICIAL_DIT.pt
    python tools/check_diffusers_export.py vae  EXPORTED_VAE_FOLDER  ORIGINAL_DIFFUSERS_VAE_FOLDER
    python tools/check_diffusers_export.py pixart EXPORTED_PIXART_FOLDER  DIFFUSERS_TRANSFORMER_FOLDER \
        [--original EXPORTED_ORIGINAL.safetensors --pixart-src DIR]

    python tools/check_diffusers_export.py sd3 EXPORTED_SD3_FOLDER  DIFFUSERS_TRANSFORMER_FOLDER \
        [--original EXPORTED_ORIGINAL.safetensors --sd3-src DIR]

For PixArt, --original also loads `ditkit export --naming original` into the original PixArt-alpha code
(PixArt / PixArtMS from DIR, as tools/make_pixart_fixtures.py imports it) with strict=True and compares its
forward with diffusers'. For SD3, --original loads `ditkit export --naming original` (Stability's single-file
names under model.diffusion_model.) into Stability's MMDiTX (mmditx.py from a Stability-AI/sd3.5 checkout DIR,
as tools/make_sd3_fixtures.py imports it) with strict=True and compares its forward with diffusers'.

FLUX.1 (--flux-src: the src/ folder of a black-forest-labs/flux checkout):

    python tools/check_diffusers_export.py flux EXPORTED_FLUX_FOLDER DIFFUSERS_TRANSFORMER_FOLDER \
        --original EXPORTED_ORIGINAL.safetensors --flux-src DIR
    python tools/check_diffusers_export.py flux-vae-make AE.safetensors --flux-src DIR     # a small random BFL ae
    python tools/check_diffusers_export.py flux-vae EXPORTED_VAE_FOLDER AE.safetensors \
        --ldm EXPORTED_LDM.safetensors --flux-src DIR

`flux` loads the diffusers export with no missing or unexpected keys and compares it with the reference
folder, then loads the original export into BFL's Flux with strict=True and compares forwards. `flux-vae`
loads the diffusers export of a converted BFL ae.safetensors (its config must carry FLUX.1's scaling and
shift factors), decodes `z / scaling_factor + shift_factor` and compares with BFL's AutoEncoder.decode(z) of
the original file, and loads the LDM-named export into BFL's AutoEncoder with strict=True.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def flux_ae(src, ch=32):
    sys.path.insert(0, src)
    from flux.modules.autoencoder import AutoEncoder, AutoEncoderParams
    return AutoEncoder(AutoEncoderParams(resolution=64, in_channels=3, ch=ch, out_ch=3, ch_mult=[1, 2], num_res_blocks=1, z_channels=16,
                                         scale_factor=0.3611, shift_factor=0.1159))


def main():
    kind, folder = sys.argv[1], sys.argv[2]
    reference = sys.argv[3] if len(sys.argv) > 3 else None
    if kind in ("flux", "flux-vae", "flux-vae-make"):
        import argparse
        from safetensors.torch import load_file, save_file
        ap = argparse.ArgumentParser()
        ap.add_argument("--original")
        ap.add_argument("--ldm")
        ap.add_argument("--flux-src", required=True)
        extra = ap.parse_args(sys.argv[3 if kind == "flux-vae-make" else 4:])
        if kind == "flux-vae-make":
            ae = flux_ae(extra.flux_src)
            g = torch.Generator().manual_seed(3)
            with torch.no_grad():
                for _, p in ae.named_parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.05)
            save_file({k: v.contiguous() for k, v in ae.state_dict().items()}, folder)
            print("wrote", folder, len(ae.state_dict()), "tensors")
            return
        if kind == "flux-vae":
            from diffusers import AutoencoderKL
            vae, info = AutoencoderKL.from_pretrained(folder, output_loading_info=True)
            assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
            assert (vae.config.scaling_factor, vae.config.shift_factor) == (0.3611, 0.1159), vae.config
            ae = flux_ae(extra.flux_src)
            ae.load_state_dict(load_file(reference), strict=True)
            z = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                a = vae.decode(z / vae.config.scaling_factor + vae.config.shift_factor).sample
                b = ae.decode(z)
            rel = ((a - b).norm() / b.norm()).item()
            print("flux-vae: diffusers keys OK, factors 0.3611/0.1159; decode vs BFL AutoEncoder.decode rel L2 = %.3e" % rel)
            assert rel < 1e-5, rel
            if extra.ldm:
                ae2 = flux_ae(extra.flux_src)
                ae2.load_state_dict(load_file(extra.ldm), strict=True)
                with torch.no_grad():
                    assert torch.equal(ae2.decode(z), b)
                print("flux-vae: the ldm export loads strictly into BFL's AutoEncoder; decode equal")
            return
        from diffusers import FluxTransformer2DModel
        model, info = FluxTransformer2DModel.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        model = model.float()
        ref = FluxTransformer2DModel.from_pretrained(reference).float()
        cfg = model.config
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_flux_fixtures import bfl_model, inputs
        sys.path.insert(0, extra.flux_src)
        kw = inputs(dict(cfg), seed=0)
        with torch.no_grad():
            a = model(**kw).sample
            b = ref(**kw).sample
        assert torch.equal(a, b)
        print("flux: diffusers keys OK; outputs equal the reference folder's")
        if extra.original:
            om = bfl_model(dict(cfg))
            om.load_state_dict(load_file(extra.original), strict=True)
            om = om.float().eval()
            n = kw["hidden_states"].shape[0]
            with torch.no_grad():
                o = om(kw["hidden_states"], kw["img_ids"][None].repeat(n, 1, 1), kw["encoder_hidden_states"], kw["txt_ids"][None].repeat(n, 1, 1),
                       kw["timestep"], kw["pooled_projections"], kw.get("guidance"))
            rel = ((o - a).norm() / a.norm()).item()
            print("flux: the original export loads strictly into BFL's Flux; BFL vs diffusers forward rel L2 = %.3e" % rel)
            assert rel < 1e-5, rel
        return
    if kind == "dit":
        from diffusers import DiTTransformer2DModel
        from dit_reference import DiT
        model, info = DiTTransformer2DModel.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        sd = torch.load(reference, map_location="cpu", weights_only=True)
        d = sd["x_embedder.proj.weight"].shape[0]
        depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
        official = DiT(input_size=model.config.sample_size, patch_size=model.config.patch_size, hidden_size=d, depth=depth,
                       num_heads=model.config.num_attention_heads, num_classes=model.config.num_embeds_ada_norm)
        official.load_state_dict(sd)
        x = torch.randn(2, 4, model.config.sample_size, model.config.sample_size)
        t = torch.tensor([10.0, 900.0])
        y = torch.tensor([1, model.config.num_embeds_ada_norm])
        with torch.no_grad():
            b = official(x, t, y)
            as_is = model(x, timestep=t, class_labels=y).sample
            # diffusers' DiT is not numerically identical to the official one: its timestep
            # frequencies use a shift of 1 and its pre-MLP LayerNorm uses eps 1e-5. Aligning those two
            # settings must make the outputs agree, which proves the weights are mapped right.
            for blk in model.transformer_blocks:
                blk.norm1.emb.time_proj.downscale_freq_shift = 0
                blk.norm3.eps = 1e-6
            a = model(x, timestep=t, class_labels=y).sample
        differs = ((as_is - b).norm() / b.norm()).item()
        rel = ((a - b).norm() / b.norm()).item()
        print("dit: keys OK; diffusers as shipped vs official rel L2 = %.3e; with official timestep/eps settings = %.3e" % (differs, rel))
        assert rel < 1e-4, rel
    elif kind == "pixart":
        import argparse
        from diffusers import PixArtTransformer2DModel
        ap = argparse.ArgumentParser()
        ap.add_argument("--original")
        ap.add_argument("--pixart-src")
        extra = ap.parse_args(sys.argv[4:])
        model, info = PixArtTransformer2DModel.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        ref = PixArtTransformer2DModel.from_pretrained(reference)
        cfg = model.config
        g = torch.Generator().manual_seed(0)
        s = cfg.sample_size
        x = torch.randn(2, cfg.in_channels, s, s, generator=g)
        y = torch.randn(2, 8, cfg.caption_channels, generator=g)
        mask = torch.ones(2, 8)
        mask[1, 5:] = 0
        t = torch.tensor([999, 10])
        added = {"resolution": torch.tensor([[s * 8.0, s * 8.0]] * 2), "aspect_ratio": torch.tensor([[1.0]] * 2)} if model.use_additional_conditions else {"resolution": None, "aspect_ratio": None}
        with torch.no_grad():
            a = model(x, y, t, added_cond_kwargs=added, encoder_attention_mask=mask).sample
            b = ref(x, y, t, added_cond_kwargs=added, encoder_attention_mask=mask).sample
        assert torch.equal(a, b)
        print("pixart: diffusers keys OK; outputs equal the reference folder's")
        if extra.original:
            from safetensors.torch import load_file
            from make_pixart_fixtures import load_original_code
            mods = load_original_code(extra.pixart_src)
            sd = load_file(extra.original)
            d = cfg.num_attention_heads * cfg.attention_head_dim
            cls = mods["PixArtMS"].PixArtMS if model.use_additional_conditions else mods["PixArt"].PixArt
            om = cls(input_size=s, patch_size=cfg.patch_size, in_channels=cfg.in_channels, hidden_size=d, depth=cfg.num_layers,
                     num_heads=cfg.num_attention_heads, caption_channels=cfg.caption_channels, lewei_scale=cfg.interpolation_scale,
                     model_max_length=sd["y_embedder.y_embedding"].shape[0], pred_sigma=True)
            om.load_state_dict(sd, strict=True)
            om.eval()
            kw = {"mask": mask[:, None, None, :].long()}
            if model.use_additional_conditions:
                kw["data_info"] = {"img_hw": added["resolution"], "aspect_ratio": added["aspect_ratio"]}
            with torch.no_grad():
                o = om(x, t.float(), y[:, None], **kw)
            rel = ((o - a).norm() / a.norm()).item()
            print("pixart: original layout loads strictly into the original code; original vs diffusers forward rel L2 = %.3e" % rel)
            assert rel < 1e-5, rel
    elif kind == "sd3":
        import argparse
        from diffusers import SD3Transformer2DModel
        ap = argparse.ArgumentParser()
        ap.add_argument("--original")
        ap.add_argument("--sd3-src")
        extra = ap.parse_args(sys.argv[4:])
        model, info = SD3Transformer2DModel.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        ref = SD3Transformer2DModel.from_pretrained(reference)
        same = lambda c: {k: v for k, v in dict(c).items() if k != "_name_or_path"}
        assert same(model.config) == same(ref.config), (dict(model.config), dict(ref.config))
        cfg = model.config
        g = torch.Generator().manual_seed(0)
        s = min(cfg.sample_size, cfg.pos_embed_max_size * cfg.patch_size if cfg.pos_embed_max_size else cfg.sample_size)
        kw = {"hidden_states": torch.randn(2, cfg.in_channels, s, s, generator=g),
              "encoder_hidden_states": torch.randn(2, 7, cfg.joint_attention_dim, generator=g),
              "pooled_projections": torch.randn(2, cfg.pooled_projection_dim, generator=g), "timestep": torch.tensor([999.0, 10.0])}
        with torch.no_grad():
            a = model(**kw).sample
            b = ref(**kw).sample
        assert torch.equal(a, b)
        print("sd3: diffusers keys and config OK; outputs equal the reference folder's")
        if extra.original:
            from safetensors.torch import load_file
            from make_sd3_fixtures import load_original_code, original_model
            mod = load_original_code(extra.sd3_src)
            prefix = "model.diffusion_model."
            sd = load_file(extra.original)
            assert all(k.startswith(prefix) for k in sd), "every tensor of a Stability single file sits under " + prefix
            om = original_model(mod, dict(cfg))
            om.load_state_dict({k[len(prefix):]: v for k, v in sd.items()}, strict=True)
            om.eval()
            with torch.no_grad():
                o = om(kw["hidden_states"], kw["timestep"], y=kw["pooled_projections"], context=kw["encoder_hidden_states"])
            rel = ((o - a).norm() / a.norm()).item()
            print("sd3: original layout loads strictly into Stability's MMDiTX; original vs diffusers forward rel L2 = %.3e" % rel)
            assert rel < 1e-5, rel
    else:
        from diffusers import AutoencoderKL
        model, info = AutoencoderKL.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
        ref = AutoencoderKL.from_pretrained(reference)
        z = torch.randn(1, model.config.latent_channels, 8, 8)
        with torch.no_grad():
            a, b = model.decode(z).sample, ref.decode(z).sample
        print("vae: keys OK; decode max abs diff = %.3e" % (a - b).abs().max().item())
        assert torch.equal(a, b)


if __name__ == "__main__":
    main()

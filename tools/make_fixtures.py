#!/usr/bin/env python3
"""Writes every committed test fixture with the real producers (torch.save, safetensors, diffusers).

Run in a virtualenv outside the repository that has torch, timm, safetensors, diffusers, h5py:
    python tools/make_fixtures.py            # all groups
    python tools/make_fixtures.py readers    # one group

Outputs go to Tests/Fixtures/<group>/. Valid inputs get a NAME.expected.json with the listing
and SHA-256 hashes computed by torch; refused inputs are listed with the error text they must
produce in refused.json. Everything is seeded, so reruns give the same tensors.
"""
import argparse
import hashlib
import io
import json
import math
import os
import pickle
import struct
import sys
import tarfile
import zipfile
from collections import OrderedDict

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

DTYPE_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
}


def tensor_sha256(t):
    """SHA-256 of the tensor's C-contiguous little-endian bytes (ditkit inspect --hash)."""
    flat = t.detach().contiguous().reshape(-1)
    if flat.numel() == 0:
        return hashlib.sha256(b"").hexdigest()
    return hashlib.sha256(flat.view(torch.uint8).numpy().tobytes()).hexdigest()


def flatten(obj, path="", tensors=None, objects=None):
    """Mirrors DiTKit's naming rules on the real Python objects."""
    if tensors is None:
        tensors, objects = [], OrderedDict()

    def join(p, c):
        return c if p == "" else p + "." + c

    def has_tensor(x):
        if isinstance(x, torch.Tensor):
            return True
        if isinstance(x, (list, tuple)):
            return any(has_tensor(i) for i in x)
        if isinstance(x, dict):
            return any(has_tensor(v) for v in x.values())
        if isinstance(x, argparse.Namespace):
            return any(has_tensor(v) for v in vars(x).values())
        return False

    if isinstance(obj, torch.Tensor):
        tensors.append((path, obj))
    elif isinstance(obj, dict):
        if not obj and path:
            objects[path] = "OrderedDict()" if isinstance(obj, OrderedDict) else "{}"
        for k, v in obj.items():
            flatten(v, join(path, str(k)), tensors, objects)
    elif isinstance(obj, argparse.Namespace):
        for k, v in vars(obj).items():
            flatten(v, join(path, k), tensors, objects)
    elif isinstance(obj, (list, tuple)) and has_tensor(obj):
        for i, v in enumerate(obj):
            flatten(v, join(path, str(i)), tensors, objects)
    else:
        objects[path] = str(obj)
    return tensors, objects


def expected_listing(fmt, obj, metadata=None):
    tensors, objects = flatten(obj)
    return {
        "format": fmt,
        "tensors": [{"name": n, "dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape), "sha256": tensor_sha256(t)} for n, t in tensors],
        "objects": objects,
        "metadata": metadata or {},
    }


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")


def rewrite_archive(src, dst, transform):
    """Re-writes a torch zip with torch's own writer (PyTorchFileWriter); `transform(name, bytes)`
    returns new bytes, or None to drop the record. Records are written in the original order."""
    reader = torch._C.PyTorchFileReader(src)
    names = [n for n in zipfile.ZipFile(src).namelist()]
    prefix = names[0].split("/")[0] + "/"
    writer = torch._C.PyTorchFileWriter(dst)
    for full in names:
        name = full[len(prefix):]
        if name in ("version", ".data/version", ".data/serialization_id"):
            continue  # written by write_end_of_file
        data = bytes(reader.get_record(name))
        new = transform(name, data)
        if new is not None:
            writer.write_record(name, new, len(new))
    writer.write_end_of_file()
    del writer


# ---------------------------------------------------------------------------------------
# Hand assembly: files torch.save cannot write (odd persistent ids, views, hostile names), built
# with Python's own pickler and torch's own zip writer, so that only the odd part is hand-made.

class Storage:
    """Pickles as BINPERSID of `pid` (the tuple torch's persistent_id returns)."""

    def __init__(self, *pid):
        self.pid = pid


class Call:
    """Pickles as `func(*args)` (GLOBAL + REDUCE)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class StoragePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, Storage) else None


def dumps(obj, protocol=2):
    b = io.BytesIO()
    StoragePickler(b, protocol=protocol).dump(obj)
    return b.getvalue()


def v2(storage, offset, size, stride):
    return Call(torch._utils._rebuild_tensor_v2, storage, offset, tuple(size), tuple(stride), False, OrderedDict())


def v3(storage, offset, size, stride, dtype):
    return Call(torch._utils._rebuild_tensor_v3, storage, offset, tuple(size), tuple(stride), False, OrderedDict(), dtype)


def write_torch_zip(path, pkl, records, byteorder="little"):
    """A torch zip written by torch's own writer (PyTorchFileWriter): data.pkl, byteorder, data/<key>."""
    w = torch._C.PyTorchFileWriter(path)
    w.write_record("data.pkl", pkl, len(pkl))
    w.write_record("byteorder", byteorder.encode(), len(byteorder))
    for key, data in records.items():
        w.write_record("data/" + key, data, len(data))
    w.write_end_of_file()
    del w
    return path


# ---------------------------------------------------------------------------------------
# Readers (issue: foundation). A small DiT state dict with official names.

def tiny_dit_state_dict(dtype=torch.float32, seed=0):
    from dit_reference import DiT, randomize_
    torch.manual_seed(seed)
    m = DiT(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10)
    randomize_(m, seed)
    return OrderedDict((k, v.to(dtype)) for k, v in m.state_dict().items()), m


class Evil:
    """An object whose unpickling would run a command."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


def readers():
    out = os.path.join(ROOT, "readers")
    os.makedirs(out, exist_ok=True)
    refused = OrderedDict()

    def save(name, obj, fmt="torch-zip", metadata=None, **kwargs):
        path = os.path.join(out, name)
        torch.save(obj, path, **kwargs)
        if metadata is None:
            metadata = {"version": "3", "byteorder": "little"} if fmt == "torch-zip" else {"protocol_version": "1001"}
        write_json(path + ".expected.json", expected_listing(fmt, obj, metadata))
        return path

    sd, _ = tiny_dit_state_dict()
    save("dit_tiny.pt", sd)
    save("dit_tiny_p4.pt", sd, pickle_protocol=4)
    save("dit_tiny_legacy.pt", sd, fmt="torch-legacy", _use_new_zipfile_serialization=False)
    save("dit_tiny_f16.pt", OrderedDict((k, v.half()) for k, v in sd.items()))
    save("dit_tiny_bf16.pt", OrderedDict((k, v.bfloat16()) for k, v in sd.items()))

    from safetensors.torch import save_file
    st = os.path.join(out, "dit_tiny.safetensors")
    save_file(dict(sd), st, metadata={"format": "pt", "source": "make_fixtures"})
    listing = expected_listing("safetensors", sd, {"format": "pt", "source": "make_fixtures"})
    # safetensors lists tensors in data order: by dtype alignment, then name.
    from safetensors import safe_open
    with safe_open(st, "pt") as f:
        order = list(f.keys())
    header_len = struct.unpack("<Q", open(st, "rb").read(8))[0]
    header = json.loads(open(st, "rb").read(8 + header_len)[8:])
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    by_name = {t["name"]: t for t in listing["tensors"]}
    listing["tensors"] = [by_name[k] for k in order]
    write_json(st + ".expected.json", listing)

    # A train.py-style checkpoint: model, ema, opt (AdamW after one step), args.
    from dit_reference import DiT, randomize_
    torch.manual_seed(1)
    model = randomize_(DiT(input_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=2, num_classes=10), 1)
    ema = randomize_(DiT(input_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=2, num_classes=10), 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
    x = torch.randn(2, 4, 8, 8)
    loss = model(x, torch.tensor([3.0, 500.0]), torch.tensor([1, 10])).square().mean()
    loss.backward()
    opt.step()
    args = argparse.Namespace(data_path="/data/imagenet/train", results_dir="results", model="DiT-S/2", image_size=64,
                              num_classes=10, epochs=1400, global_batch_size=256, global_seed=0, vae="ema",
                              num_workers=4, log_every=100, ckpt_every=50000, lr=1e-4, betas=(0.9, 0.999), tf32=True)
    ckpt = {"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "args": args}
    save("train_checkpoint.pt", ckpt)

    # Views and odd dtypes.
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = OrderedDict([
        ("base", base),
        ("transposed", base.t()),
        ("sliced", base[1:3, 2:5]),
        ("row", base[2]),
        ("expanded", torch.tensor([1.5, -2.5]).expand(3, 2)),
        ("scalar", torch.tensor(3.25)),
        ("empty", torch.zeros(0, 3)),
        ("long", torch.arange(-3, 5, dtype=torch.int64)),
        ("int32", torch.tensor([1, -2, 2**31 - 1], dtype=torch.int32)),
        ("int16", torch.tensor([7, -7], dtype=torch.int16)),
        ("int8", torch.tensor([-128, 127], dtype=torch.int8)),
        ("mask", torch.tensor([True, False, True])),
        ("bytes", torch.tensor([0, 255, 17], dtype=torch.uint8)),
        ("double", torch.tensor([1.0 / 3.0, 2.0], dtype=torch.float64)),
        ("half_view", torch.arange(8, dtype=torch.float16).reshape(2, 4)[:, 1::2]),
        ("fp8", torch.tensor([0.5, -1.0, 2.0]).to(torch.float8_e4m3fn)),
    ])
    views["step"] = 1000
    views["note"] = "views and dtypes"
    views["flags"] = {1, 2}
    views["blob"] = b"\x00\x01ab"
    save("views.pt", views)
    save("views_legacy.pt", OrderedDict((k, v) for k, v in views.items() if k != "fp8"), fmt="torch-legacy",
         _use_new_zipfile_serialization=False)

    # Big-endian: what torch.save writes on a big-endian host (byteorder 'big', storages swapped),
    # produced with torch's own zip writer.
    be_src = os.path.join(out, "dit_tiny.pt")
    be = os.path.join(out, "dit_tiny_big_endian.pt")
    loaded = torch.load(be_src, weights_only=True)
    storages = {}
    reader = torch._C.PyTorchFileReader(be_src)

    def to_big(name, data):
        if name == "byteorder":
            return b"big"
        if name.startswith("data/"):
            return bytes(bytearray(torch.frombuffer(bytearray(data), dtype=torch.float32).numpy().byteswap().tobytes()))
        return data
    rewrite_archive(be_src, be, to_big)
    # torch reads it back to the same values (checked here, with the real loader).
    back = torch.load(be, weights_only=True)
    assert all(torch.equal(back[k], loaded[k]) for k in loaded)
    write_json(be + ".expected.json", expected_listing("torch-zip", loaded, {"version": "3", "byteorder": "big"}))

    # ---------------- refused inputs ----------------
    def refuse(name, message):
        refused[name] = message

    small = OrderedDict([("w", torch.ones(2, 2)), ("b", torch.zeros(2))])

    import posixpath  # noqa: F401  (os.system pickles as posix.system on Linux)
    torch.save({"w": torch.ones(2), "payload": Evil(os.system, ("echo pwned",))}, os.path.join(out, "evil_posix_system.pt"))
    refuse("evil_posix_system.pt", "refused global 'posix.system'")
    torch.save({"w": torch.ones(2), "payload": Evil(eval, ("1+1",))}, os.path.join(out, "evil_builtins_eval.pt"))
    refuse("evil_builtins_eval.pt", "refused global '__builtin__.eval'")
    torch.save({"w": torch.ones(2), "payload": Evil(os.system, ("echo pwned",))}, os.path.join(out, "evil_stack_global_p4.pt"),
               pickle_protocol=4)
    refuse("evil_stack_global_p4.pt", "refused global 'posix.system'")
    nested = OrderedDict(small)
    nested["extra"] = {"config": [1, 2, {"deep": Evil(os.system, ("echo pwned",))}]}
    torch.save(nested, os.path.join(out, "evil_nested_in_state_dict.pt"))
    refuse("evil_nested_in_state_dict.pt", "refused global 'posix.system'")

    # The literal os.system global, as a hand-written protocol-2 pickle inside a real torch zip.
    payload = b"\x80\x02}q\x00X\x01\x00\x00\x00xq\x01cos\nsystem\nq\x02X\n\x00\x00\x00echo pwnedq\x03\x85q\x04Rq\x05s."
    rewrite_archive(os.path.join(out, "dit_tiny.pt"), os.path.join(out, "evil_os_system.pt"),
                    lambda n, d: payload if n == "data.pkl" else (None if n.startswith("data/") else d))
    refuse("evil_os_system.pt", "refused global 'os.system'")

    # TorchScript.
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x)
    torch.jit.save(torch.jit.script(Tiny()), os.path.join(out, "torchscript.pt"))
    refuse("torchscript.pt", "TorchScript archive")

    good = open(os.path.join(out, "dit_tiny.pt"), "rb").read()
    open(os.path.join(out, "truncated.pt"), "wb").write(good[: len(good) // 2])
    refuse("truncated.pt", "corrupt zip archive")

    torch.save(small, os.path.join(out, "small.pt"))
    src = os.path.join(out, "small.pt")
    rewrite_archive(src, os.path.join(out, "missing_record.pt"), lambda n, d: None if n == "data/1" else d)
    refuse("missing_record.pt", "missing storage record 'data/1'")
    rewrite_archive(src, os.path.join(out, "short_record.pt"), lambda n, d: d[:-4] if n == "data/0" else d)
    refuse("short_record.pt", "storage record 'data/0' holds 12 bytes but its storage needs 16")

    # A view past the end of its storage: the pickle claims 3 elements of a 2-element storage.
    view_src = os.path.join(out, "view_src.pt")
    torch.save({"v": torch.zeros(2)}, view_src)
    def bad_view(name, data):
        if name == "data.pkl":
            # size tuple (2,) -> (3,): BININT1 2, TUPLE1 ... stride (1,) stays.
            i = data.index(b"K\x02\x85")
            return data[:i] + b"K\x03\x85" + data[i + 3:]
        return data
    rewrite_archive(view_src, os.path.join(out, "view_out_of_bounds.pt"), bad_view)
    os.remove(view_src)
    refuse("view_out_of_bounds.pt", "tensor 'v' reads 3 elements of a storage that holds 2")

    # Tar format (torch < 0.4): a tar with the three members torch's legacy_load expects.
    with tarfile.open(os.path.join(out, "tar_format.pt"), "w", format=tarfile.PAX_FORMAT) as tf:
        for member in ("storages", "tensors", "pickle"):
            data = pickle.dumps(0, protocol=2)
            info = tarfile.TarInfo(member)
            info.size = len(data)
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    refuse("tar_format.pt", "tar-format PyTorch checkpoint")

    g = torch.Generator().manual_seed(7)
    open(os.path.join(out, "random_bytes.bin"), "wb").write(bytes(torch.randint(0, 256, (4096,), generator=g, dtype=torch.uint8).tolist()))
    refuse("random_bytes.bin", "not a recognised checkpoint")

    write_json(os.path.join(out, "refused.json"), refused)
    print("readers: wrote", len(os.listdir(out)), "files")


# ---------------------------------------------------------------------------------------
# Convert (issue: native format). Every accepted input form, made by its real producer.

def official_to_diffusers_dit(sd, depth):
    """Official DiT names -> DiTTransformer2DModel names, as diffusers' scripts/convert_dit_to_diffusers.py does."""
    out = OrderedDict()
    out["pos_embed.proj.weight"] = sd["x_embedder.proj.weight"]
    out["pos_embed.proj.bias"] = sd["x_embedder.proj.bias"]
    for i in range(depth):
        b = "transformer_blocks.%d." % i
        out[b + "norm1.emb.timestep_embedder.linear_1.weight"] = sd["t_embedder.mlp.0.weight"]
        out[b + "norm1.emb.timestep_embedder.linear_1.bias"] = sd["t_embedder.mlp.0.bias"]
        out[b + "norm1.emb.timestep_embedder.linear_2.weight"] = sd["t_embedder.mlp.2.weight"]
        out[b + "norm1.emb.timestep_embedder.linear_2.bias"] = sd["t_embedder.mlp.2.bias"]
        out[b + "norm1.emb.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
        out[b + "norm1.linear.weight"] = sd["blocks.%d.adaLN_modulation.1.weight" % i]
        out[b + "norm1.linear.bias"] = sd["blocks.%d.adaLN_modulation.1.bias" % i]
        q, k, v = torch.chunk(sd["blocks.%d.attn.qkv.weight" % i], 3, dim=0)
        qb, kb, vb = torch.chunk(sd["blocks.%d.attn.qkv.bias" % i], 3, dim=0)
        out[b + "attn1.to_q.weight"], out[b + "attn1.to_k.weight"], out[b + "attn1.to_v.weight"] = q, k, v
        out[b + "attn1.to_q.bias"], out[b + "attn1.to_k.bias"], out[b + "attn1.to_v.bias"] = qb, kb, vb
        out[b + "attn1.to_out.0.weight"] = sd["blocks.%d.attn.proj.weight" % i]
        out[b + "attn1.to_out.0.bias"] = sd["blocks.%d.attn.proj.bias" % i]
        out[b + "ff.net.0.proj.weight"] = sd["blocks.%d.mlp.fc1.weight" % i]
        out[b + "ff.net.0.proj.bias"] = sd["blocks.%d.mlp.fc1.bias" % i]
        out[b + "ff.net.2.weight"] = sd["blocks.%d.mlp.fc2.weight" % i]
        out[b + "ff.net.2.bias"] = sd["blocks.%d.mlp.fc2.bias" % i]
    out["proj_out_1.weight"] = sd["final_layer.adaLN_modulation.1.weight"]
    out["proj_out_1.bias"] = sd["final_layer.adaLN_modulation.1.bias"]
    out["proj_out_2.weight"] = sd["final_layer.linear.weight"]
    out["proj_out_2.bias"] = sd["final_layer.linear.bias"]
    return out


def diffusers_to_ldm_vae(sd, levels):
    """Current diffusers AutoencoderKL names -> original LDM names (attention as 1x1 convs)."""
    import re
    out = OrderedDict()
    for k, v in sd.items():
        n = k
        n = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.conv_shortcut\.", r"encoder.down.\1.block.\2.nin_shortcut.", n)
        n = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", n)
        n = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", r"encoder.down.\1.downsample.conv.", n)
        m = re.match(r"^decoder\.up_blocks\.(\d+)\.(.*)$", n)
        if m:
            i = levels - 1 - int(m.group(1))
            rest = m.group(2)
            rest = re.sub(r"^resnets\.(\d+)\.conv_shortcut\.", r"block.\1.nin_shortcut.", rest)
            rest = re.sub(r"^resnets\.(\d+)\.", r"block.\1.", rest)
            rest = re.sub(r"^upsamplers\.0\.conv\.", "upsample.conv.", rest)
            n = "decoder.up.%d.%s" % (i, rest)
        for side in ("encoder", "decoder"):
            n = n.replace(side + ".mid_block.resnets.0.", side + ".mid.block_1.")
            n = n.replace(side + ".mid_block.resnets.1.", side + ".mid.block_2.")
            n = n.replace(side + ".mid_block.attentions.0.group_norm.", side + ".mid.attn_1.norm.")
            for a, b in (("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
                n = n.replace(side + ".mid_block.attentions.0.%s." % a, side + ".mid.attn_1.%s." % b)
            n = n.replace(side + ".conv_norm_out.", side + ".norm_out.")
        if ".attn_1." in n and n.endswith(".weight") and v.dim() == 2:
            v = v[:, :, None, None]
        out[n] = v.contiguous()
    return out


def small_vae(seed=3):
    """The convert group's VAE (LDM, legacy diffusers and full-checkpoint namings). Widths (64, 32), the
    wide level first: 1x1 shortcuts in the encoder (64 -> 32) and the decoder (32 -> 64), and a 32-wide
    mid block, 410k parameters (SD's order, (32, 64), puts the mid block at 64 and needs 658k)."""
    from diffusers import AutoencoderKL
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(64, 32), layers_per_block=1,
                        latent_channels=4, norm_num_groups=32, sample_size=32)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.2 if p.dim() > 1 else 0.05) + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return vae


def convert():
    out = os.path.join(ROOT, "convert")
    os.makedirs(out, exist_ok=True)
    from safetensors.torch import save_file
    expected = OrderedDict()

    # Reference values for every float conversion, computed by torch.
    sd, _ = tiny_dit_state_dict()
    def quantize_int8(w):
        rows = w.reshape(w.shape[0], -1)
        scale = rows.abs().amax(dim=1) / 127
        q = torch.where(scale[:, None] > 0, torch.round(rows / scale[:, None].clamp_min(1e-45)), torch.zeros_like(rows)).clamp(-127, 127)
        return q.to(torch.int8).reshape(w.shape), scale.float()
    expected["dit_tiny"] = OrderedDict()
    for k, v in sd.items():
        e = {"f32": tensor_sha256(v), "f16": tensor_sha256(v.half()), "bf16": tensor_sha256(v.bfloat16())}
        if v.dim() in (2, 4):
            q, s = quantize_int8(v)
            e["int8"] = tensor_sha256(q)
            e["int8_scale"] = tensor_sha256(s)
        expected["dit_tiny"][k] = e

    # diffusers DiT: the official weights loaded into a real DiTTransformer2DModel and saved by it.
    from diffusers import DiTTransformer2DModel
    dm = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
                               norm_num_groups=32, sample_size=8, patch_size=2, num_embeds_ada_norm=10)
    missing, unexpected = dm.load_state_dict(official_to_diffusers_dit(sd, 2), strict=False)
    assert not unexpected and all(k.endswith("pos_embed") for k in missing), (missing, unexpected)
    folder = os.path.join(out, "dit_diffusers")
    dm.save_pretrained(folder, safe_serialization=True)
    # A copy without config.json: the image size must then come from --image-size.
    import shutil
    shutil.copy(os.path.join(folder, "diffusion_pytorch_model.safetensors"), os.path.join(out, "dit_diffusers_noconfig.safetensors"))

    # VAE in every accepted naming.
    vae = small_vae()
    vsd = OrderedDict((k, v.detach().clone()) for k, v in vae.state_dict().items())
    # (Current diffusers naming is covered by the verify group's VAE folder, saved by diffusers.)
    legacy = OrderedDict()
    for k, v in vsd.items():
        for a, b in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            k = k.replace("attentions.0.%s." % a, "attentions.0.%s." % b)
        legacy[k] = v.half()
    save_file(legacy, os.path.join(out, "vae_diffusers_legacy_f16.safetensors"))
    ldm = diffusers_to_ldm_vae(vsd, 2)
    # diffusers' own single-file converter must read our LDM names back to the same tensors.
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    back = convert_ldm_vae_checkpoint(ldm, dict(vae.config))
    assert set(back) == set(vsd), set(back) ^ set(vsd)
    assert all(torch.equal(back[k].reshape(vsd[k].shape), vsd[k]) for k in vsd)
    torch.save({"state_dict": ldm, "global_step": 840000}, os.path.join(out, "vae_ldm.ckpt"))
    full = OrderedDict(("first_stage_model." + k, v.half()) for k, v in ldm.items())
    full["model.diffusion_model.input_blocks.0.0.weight"] = torch.randn(8, 4, 3, 3)
    full["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    torch.save({"state_dict": full, "epoch": 6, "global_step": 840000}, os.path.join(out, "sd_full_f16.ckpt"))
    expected["vae"] = OrderedDict((k, {"f32": tensor_sha256(v), "f16": tensor_sha256(v.half())}) for k, v in vsd.items())
    expected["vae_order"] = list(vsd.keys())

    # Strict-loading failures and an f16 overflow.
    bad = OrderedDict(sd)
    del bad["blocks.1.mlp.fc2.bias"]
    bad["blocks.0.attn.extra"] = torch.zeros(3)
    bad["final_layer.linear.bias"] = torch.zeros(31)
    torch.save(bad, os.path.join(out, "dit_mismatch.pt"))
    hot = OrderedDict(sd)
    w = hot["blocks.0.mlp.fc2.weight"].clone()
    w[0, :3] = torch.tensor([70000.0, -1e6, 65520.0])
    hot["blocks.0.mlp.fc2.weight"] = w
    torch.save(hot, os.path.join(out, "dit_f16_overflow.pt"))

    # The 2-D sin-cos position embedding, computed by numpy as the official code does.
    from dit_reference import get_2d_sincos_pos_embed
    pe = OrderedDict()
    for d, g in ((32, 4), (128, 4), (384, 16), (1152, 16), (1152, 32), (1024, 32), (768, 8)):
        pe["%d,%d" % (d, g)] = tensor_sha256(torch.from_numpy(get_2d_sincos_pos_embed(d, g)).float())
    expected["pos_embed"] = pe
    write_json(os.path.join(out, "expected.json"), expected)
    print("convert: wrote", len(os.listdir(out)), "entries")


# ---------------------------------------------------------------------------------------
# Verify (issue: forward passes). A DiT and an SD-structured VAE at small sizes, with reference
# activations from PyTorch forward hooks (tools/dump_reference.py).

def verify():
    out = os.path.join(ROOT, "verify")
    os.makedirs(out, exist_ok=True)
    from dit_reference import DiT, randomize_
    from dump_reference import dump_dit, dump_vae_decode, dump_vae_encode

    # DiT with two 64-wide heads, depth 2, at an 8x8 latent (64 px), 1000 classes + null.
    torch.manual_seed(11)
    dit = randomize_(DiT(input_size=8, patch_size=2, hidden_size=128, depth=2, num_heads=2, num_classes=1000), 11).eval()
    torch.save(dit.state_dict(), os.path.join(out, "dit_verify.pt"))
    g = torch.Generator().manual_seed(12)
    x = torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([999.0, 421.0, 0.0])
    y = torch.tensor([1, 500, 1000])
    # blocks.0.attn.qkv is a module DiTKit does not trace: verify must list it as skipped.
    dump_dit(dit, x, t, y, os.path.join(out, "dit_reference.h5"), "DiT-custom", extra=["blocks.0.attn.qkv"])
    # The same inputs through a model whose block 1 MLP differs: verify must fail there.
    perturbed = randomize_(DiT(input_size=8, patch_size=2, hidden_size=128, depth=2, num_heads=2, num_classes=1000), 11).eval()
    with torch.no_grad():
        perturbed.blocks[1].mlp.fc2.weight.add_(torch.randn(perturbed.blocks[1].mlp.fc2.weight.shape, generator=g) * 0.05)
    dump_dit(perturbed, x, t, y, os.path.join(out, "dit_reference_perturbed_block1.h5"), "DiT-custom")
    # forward_with_cfg on the same model, for the guidance rule.
    with torch.no_grad():
        xc = torch.cat([x[:2], x[:2]])
        cfg = dit.forward_with_cfg(xc, torch.tensor([500.0, 500.0, 500.0, 500.0]), torch.tensor([3, 7, 1000, 1000]), 4.0)
    import h5py
    with h5py.File(os.path.join(out, "dit_cfg.h5"), "w") as f:
        f.create_dataset("inputs/x", data=xc.numpy())
        f.create_dataset("inputs/t", data=np.full(4, 500.0, dtype=np.float32))
        f.create_dataset("inputs/y", data=np.array([3, 7, 1000, 1000], dtype=np.int64))
        f.attrs["cfg_scale"] = 4.0
        f.create_dataset("output", data=cfg.numpy())

    # VAE with the sd-vae structure (4 levels, 2 encoder / 3 decoder ResNets per level, 1x1
    # shortcuts, mid attention) at reduced widths, saved by diffusers itself.
    from diffusers import AutoencoderKL
    torch.manual_seed(13)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 64, 64), layers_per_block=2,
                        latent_channels=4, norm_num_groups=32, sample_size=64)
    g = torch.Generator().manual_seed(13)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    vae.eval()
    vae.save_pretrained(os.path.join(out, "vae_verify"), safe_serialization=True)
    # Reference activations at a 4x4 latent / 32x32 image: every layer and level runs (down to 4x4 in
    # the encoder), at a quarter of the bytes of the VAE's 64 px sample size.
    g = torch.Generator().manual_seed(14)
    z = torch.randn(1, 4, 4, 4, generator=g)
    dump_vae_decode(vae, z, os.path.join(out, "vae_decode_reference.h5"), "vae-custom")
    image = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    dump_vae_encode(vae, image, os.path.join(out, "vae_encode_reference.h5"), "vae-custom")
    print("verify: wrote", len(os.listdir(out)), "entries")


# ---------------------------------------------------------------------------------------
# Sampling (issue: sampler and report): DDIM from fixed noise through the reference of the official
# loop (tools/diffusion_reference.py), decoded by the verify VAE, and respacing sets.

def sample():
    out = os.path.join(ROOT, "sample")
    os.makedirs(out, exist_ok=True)
    import h5py
    from diffusers import AutoencoderKL
    from dit_reference import DiT
    from diffusion_reference import Diffusion, space_timesteps
    ver = os.path.join(ROOT, "verify")
    dit = DiT(input_size=8, patch_size=2, hidden_size=128, depth=2, num_heads=2, num_classes=1000).eval()
    dit.load_state_dict(torch.load(os.path.join(ver, "dit_verify.pt"), weights_only=True))
    vae = AutoencoderKL.from_pretrained(os.path.join(ver, "vae_verify")).eval()
    g = torch.Generator().manual_seed(21)
    noise = torch.randn(2, 4, 8, 8, generator=g)
    classes = torch.tensor([207, 360])
    spec, cfg = "ddim10", 4.0
    diffusion = Diffusion(spec)
    with torch.no_grad():
        z = torch.cat([noise, noise], 0)
        y = torch.cat([classes, torch.tensor([1000, 1000])], 0)
        latents = diffusion.sample(lambda x, t: dit.forward_with_cfg(x, t, y, cfg), z, ddim=True)
        latents = latents.chunk(2, dim=0)[0]
        images = vae.decode(latents / 0.18215).sample
        pixels = images.clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        # Unguided DDIM too (cfg 1: no doubled batch).
        plain = diffusion.sample(lambda x, t: dit(x, t, classes), noise, ddim=True)
    with h5py.File(os.path.join(out, "ddim_reference.h5"), "w") as f:
        f.create_dataset("noise", data=noise.numpy())
        f.create_dataset("classes", data=classes.numpy().astype(np.int64))
        f.create_dataset("latents", data=latents.numpy())
        f.create_dataset("latents_unguided", data=plain.numpy())
        f.create_dataset("pixels", data=pixels.numpy())
        f.attrs["steps"] = spec
        f.attrs["cfg_scale"] = cfg
    specs = ["250", "25", "ddim25", "ddim50", "ddim10", "10,15,20", "1", "7", "100,3", "1000"]
    write_json(os.path.join(out, "respacing.json"), OrderedDict((s, sorted(space_timesteps(1000, s))) for s in specs))
    print("sample: wrote", len(os.listdir(out)), "files")


# ---------------------------------------------------------------------------------------
# Hostile (issue: reliability and security): files built with the real pickle module and torch.save
# that scanners have been fooled by, and resource attacks. Every one must be refused with exit 2.

class Reduce:
    """Pickles as `obj(*args)`, the way a payload does; `obj` is the real callable."""

    def __init__(self, obj, args=()):
        self.obj, self.args = obj, args

    def __reduce__(self):
        return (self.obj, self.args)


def evil_pickle(module, name, protocol=2):
    """A state dict whose value calls module.name, with the global written literally (for modules
    pickle would spell differently or that do not exist on this machine, like os, nt, requests.api)."""
    g = b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return b"\x80\x02}q\x00X\x01\x00\x00\x00xq\x01" + g + b"X\x02\x00\x00\x00idq\x02\x85q\x03Rq\x04s."


def zip_raw(path, entries, prefix="archive/"):
    """A stored zip with the given (name, bytes) entries, written with Python's zipfile."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(prefix + name, data)


def hostile():
    out = os.path.join(ROOT, "hostile")
    os.makedirs(out, exist_ok=True)
    cases = OrderedDict()

    def save(name, obj, expect, **kw):
        torch.save(obj, os.path.join(out, name), **kw)
        cases[name] = expect

    w = torch.ones(2)
    import builtins, functools, importlib, operator, pty, runpy, shutil, socket, subprocess, types, webbrowser
    # Real callables, pickled by torch.save under the names pickle gives them.
    real = [(os.system, "posix.system"), (subprocess.Popen, "commands.Popen"), (subprocess.check_output, "commands.check_output"),
            (eval, "__builtin__.eval"), (exec, "__builtin__.exec"), (getattr, "__builtin__.getattr"), (compile, "__builtin__.compile"),
            (open, "io.open"), (builtins.__import__, "__builtin__.__import__"), (sys.exit, "sys.exit"), (socket.create_connection, "socket.create_connection"),
            (webbrowser.open, "webbrowser.open"), (runpy.run_path, "runpy.run_path"), (pty.spawn, "pty.spawn"), (shutil.rmtree, "shutil.rmtree"),
            (importlib.import_module, "importlib.import_module"), (functools.partial, "functools.partial"),
            (operator.attrgetter, "operator.attrgetter"), (pickle.loads, "pickle.loads"), (torch.load, "torch.serialization.load")]
    for obj, spelled in real:
        name = "global_" + spelled.replace(".", "_") + ".pt"
        save(name, {"w": w, "x": Reduce(obj, ("echo pwned",))}, "refused global '%s'" % spelled)
    # Literal spellings scanners list: os.system, nt.system, builtins.*, and third-party modules.
    src = os.path.join(out, "_clean.pt")
    torch.save({"w": w}, src)
    for module, name in [("os", "system"), ("nt", "system"), ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"),
                         ("types", "CodeType"), ("requests.api", "get"), ("aiohttp.client", "ClientSession"), ("cloudpickle", "loads"),
                         ("__builtin__", "apply"), ("builtins", "breakpoint"), ("httplib", "HTTPConnection")]:
        fname = "literal_%s_%s.pt" % (module.replace(".", "_"), name)
        data = evil_pickle(module, name)
        rewrite_archive(src, os.path.join(out, fname), lambda n, d, data=data: data if n == "data.pkl" else (None if n.startswith("data/") else d))
        cases[fname] = "refused global '%s.%s'" % (module, name)
    # Payloads hidden deep in an otherwise valid state dict, in a list, in a tuple, as a dict key.
    sd = OrderedDict([("a.weight", torch.randn(3, 3)), ("a.bias", torch.zeros(3))])
    sd["meta"] = {"cfg": [1, 2, {"deep": (3, [Reduce(os.system, ("id",))])}]}
    save("nested_deep.pt", sd, "refused global 'posix.system'")
    save("as_dict_key.pt", {Reduce(os.system, ("id",)): w}, "refused global 'posix.system'")
    save("in_train_args.pt", {"model": sd.copy(), "args": argparse.Namespace(lr=Reduce(eval, ("1",)))}, "refused global")
    save("in_legacy_stream.pt", {"w": w, "x": Reduce(os.system, ("id",))}, "refused global 'posix.system'", _use_new_zipfile_serialization=False)
    # STACK_GLOBAL (protocols 4 and 5).
    save("stack_global_p4.pt", {"w": w, "x": Reduce(os.system, ("id",))}, "refused global 'posix.system'", pickle_protocol=4)
    save("stack_global_p5.pt", {"w": w, "x": Reduce(os.system, ("id",))}, "refused global 'posix.system'", pickle_protocol=5)
    # Protocol 0 and 1 pickles with no PROTO header, as data.pkl of a real torch zip.
    for proto in (0, 1):
        payload = pickle.dumps({"x": Reduce(os.system, ("id",))}, protocol=proto)
        assert not payload.startswith(b"\x80")
        rewrite_archive(src, os.path.join(out, "protocol%d_no_header.pt" % proto),
                        lambda n, d, p=payload: p if n == "data.pkl" else (None if n.startswith("data/") else d))
        cases["protocol%d_no_header.pt" % proto] = "refused global 'posix.system'"
    # The payload before a deliberately corrupted tail: refused at the global, not for the garbage.
    payload = b"\x80\x02cposix\nsystem\nX\x02\x00\x00\x00idq\x00\x85R" + b"\xff" * 64
    rewrite_archive(src, os.path.join(out, "corrupted_tail.pt"), lambda n, d: payload if n == "data.pkl" else (None if n.startswith("data/") else d))
    cases["corrupted_tail.pt"] = "refused global 'posix.system'"
    # Archive names and zip flags scanners miss: an odd folder name, a data descriptor and UTF-8 flag.
    evil = evil_pickle("os", "system")
    zip_raw(os.path.join(out, "odd_folder_name.pt"), [("data.pkl", evil), ("version", b"3\n")], prefix="..weights.bin/")
    cases["odd_folder_name.pt"] = "refused global 'os.system'"
    zip_raw(os.path.join(out, "utf8_flag_name.pt"), [("data.pkl", evil), ("version", b"3\n")], prefix="modèle/")
    cases["utf8_flag_name.pt"] = "refused global 'os.system'"
    # The malicious pickle under a name other than data.pkl is not read; the real data.pkl is clean
    # but a storage is missing: still refused, and nothing from the extra member runs.
    zip_raw(os.path.join(out, "pickle_under_other_name.pt"), [("data.pkl", pickle.dumps({"w": 1}, protocol=2)), ("extra.bin", evil), ("version", b"3\n")])
    cases["pickle_under_other_name.pt"] = "unexpected member 'archive/extra.bin'"
    # Resource attacks.
    # Each level is a list holding the previous level twice: 2^199 paths through 199 nodes.
    memo = bytearray(b"\x80\x02]q\x000")
    for i in range(1, 200):
        memo += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i]) + b"0"
    memo += b"h" + bytes([199]) + b"."
    zip_raw(os.path.join(out, "memo_bomb.pt"), [("data.pkl", bytes(memo)), ("version", b"3\n")])
    # No tensor inside: since issue 18 it is one object, rendered truncated (hostile_round2 lists it).
    deep = b"\x80\x02)" + b"\x85" * 400_000 + b"."   # deep enough to overflow a recursive teardown
    zip_raw(os.path.join(out, "deep_nesting.pt"), [("data.pkl", deep), ("version", b"3\n")])
    cases["deep_nesting.pt"] = "nests deeper than"
    marks = b"\x80\x02" + b"(" * 20_000 + b"."
    zip_raw(os.path.join(out, "deep_marks.pt"), [("data.pkl", marks), ("version", b"3\n")])
    cases["deep_marks.pt"] = "nested MARKs"
    huge = b"\x80\x02X\xff\xff\xff\x7fabc."
    zip_raw(os.path.join(out, "huge_string_length.pt"), [("data.pkl", huge), ("version", b"3\n")])
    cases["huge_string_length.pt"] = "declares 2147483647 bytes"
    huge8 = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"abc."
    zip_raw(os.path.join(out, "huge_bytes8_length.pt"), [("data.pkl", huge8), ("version", b"3\n")])
    cases["huge_bytes8_length.pt"] = "declares 4611686018427387904 bytes"
    # A storage that declares more bytes than its record holds, and one with a huge element count.
    def grow(name, data):
        if name == "data.pkl":
            i = data.index(b"K\x02")   # numel 2 of the storage persistent id (after 'cpu')
            return data[:i] + b"J\x00\x00\x00\x10" + data[i + 2:]
        return data
    rewrite_archive(src, os.path.join(out, "storage_larger_than_record.pt"), grow)
    cases["storage_larger_than_record.pt"] = "holds 8 bytes but its storage needs"
    # Zip structure attacks, hand-assembled from a plain stored zip: duplicate names, overlapping entries.
    base = os.path.join(out, "_base.zip")
    z = zipfile.ZipFile(src)
    zip_raw(base, [(n.split("/", 1)[1], z.read(n)) for n in z.namelist()])
    good = open(base, "rb").read()
    os.remove(base)
    cd_start = good.index(b"PK\x01\x02")
    eocd = good.rindex(b"PK\x05\x06")
    cd = good[cd_start:eocd]
    entries = []
    p = 0
    while p < len(cd):
        n, e, c = struct.unpack("<HHH", cd[p + 28:p + 34])
        entries.append(cd[p:p + 46 + n + e + c])
        p += 46 + n + e + c

    def write_zip(name, cd_entries, body=good[:cd_start]):
        cdb = b"".join(cd_entries)
        tail = good[eocd:eocd + 22]
        tail = tail[:8] + struct.pack("<HHII", len(cd_entries), len(cd_entries), len(cdb), len(body)) + tail[20:]
        open(os.path.join(out, name), "wb").write(body + cdb + tail)
    write_zip("duplicate_entries.pt", entries + [entries[0]])
    cases["duplicate_entries.pt"] = "corrupt zip archive"
    alias = bytearray(entries[-1])
    struct.pack_into("<I", alias, 42, struct.unpack("<I", entries[0][42:46])[0])
    write_zip("overlapping_entries.pt", entries[:-1] + [bytes(alias)])
    cases["overlapping_entries.pt"] = "corrupt zip archive"
    # Deflate bomb: data.pkl compressed 1000:1 and more (a 64 MB run of zeros).
    with zipfile.ZipFile(os.path.join(out, "zip_bomb.pt"), "w", zipfile.ZIP_DEFLATED) as zb:
        zb.writestr("archive/data.pkl", b"\x80\x02" + b"\x00" * (64 << 20))
        zb.writestr("archive/version", b"3\n")
    cases["zip_bomb.pt"] = "refused as a zip bomb"
    # safetensors denial of service: a 4 GB header length, and offsets far outside the file.
    open(os.path.join(out, "safetensors_huge_header.safetensors"), "wb").write(struct.pack("<Q", 4 << 30) + b"{}")
    cases["safetensors_huge_header.safetensors"] = "exceeds the limit"
    hdr = json.dumps({"x": {"dtype": "F32", "shape": [1 << 40], "data_offsets": [0, 4 << 40]}}).encode()
    open(os.path.join(out, "safetensors_offsets_outside.safetensors"), "wb").write(struct.pack("<Q", len(hdr)) + hdr + b"\x00" * 16)
    cases["safetensors_offsets_outside.safetensors"] = "tensor data ends at byte"
    os.remove(src)
    write_json(os.path.join(out, "cases.json"), cases)
    print("hostile: wrote", len(cases), "cases")
    hostile_round2()


def hostile_round2():
    """Issue 18: crashes, blow-ups, terminal injection. Refused files go to cases.json (file -> text of
    the one-line error); files that must be read, safely, go to accepted.json (file -> what they test).
    Larger inputs of the same kinds (1 MiB strings behind memo references, an 88 MB safetensors header,
    4 MiB names, FIFOs, files truncated while mapped) are generated at test time by the Swift tests."""
    out = os.path.join(ROOT, "hostile")
    cases = json.load(open(os.path.join(out, "cases.json")), object_pairs_hook=OrderedDict)
    cases.pop("memo_bomb.pt", None)
    accepted = OrderedDict()
    one = struct.pack("<f", 1.5)

    def fs(numel, key="0"):
        return Storage("storage", torch.FloatStorage, key, "cpu", numel)

    def zipped(name, obj, records, expect, byteorder="little"):
        write_torch_zip(os.path.join(out, name), dumps(obj), records, byteorder)
        cases[name] = expect

    # Memory and time: views and references that expand what little the file holds.
    zipped("stride0_bomb.pt", {"t": v2(fs(1), 0, (32768, 32768), (0, 0))}, {"0": one}, "add up to more than")
    level = [v2(fs(1), 0, (1,), (1,))]
    for _ in range(200):
        level = [level, level]
    zipped("memo_bomb_tensor.pt", {"x": level}, {"0": one}, "expands to more than")
    tree = {}
    for _ in range(7):
        tree = {str(i): tree for i in range(10)}
    zipped("dict_tree_memo.pt", {"w": v2(fs(1), 0, (1,), (1,)), "tree": tree}, {"0": one}, "expands to more than")
    shape = OrderedDict([("t", v2(fs(1), 0, (1,) * 65, (1,) * 65))])
    zipped("rank65.pt", shape, {"0": one}, "dimensions (at most 64)")
    zipped("long_name.pt", {"n" * 5000: v2(fs(1), 0, (1,), (1,))}, {"0": one}, "longer than 4096 bytes")
    # Crashes: arithmetic on sizes and offsets from the file.
    zipped("stride_2p63.pt", {"t": v2(fs(1), 0, (1,), (2 ** 63,))}, {"0": one}, "tensor stride 9223372036854775808 does not fit in 64 bits")
    a, b = 2 ** 63 - 2 ** 47, 2 ** 63 - 11
    hdr = json.dumps({"a": {"dtype": "U8", "shape": [2 ** 47, 2 ** 16 - 1], "data_offsets": [0, a]},
                      "b": {"dtype": "U8", "shape": [b - a], "data_offsets": [a, b]}}).encode()
    open(os.path.join(out, "safetensors_offsets_overflow.safetensors"), "wb").write(struct.pack("<Q", len(hdr)) + hdr)
    cases["safetensors_offsets_overflow.safetensors"] = "overflow computing buffer size"
    # Structure.
    me = [v2(fs(1), 0, (1,), (1,))]
    me.append(me)
    zipped("self_containing_list.pt", {"l": me}, {"0": one}, "contains itself at 'l.1'")
    write_torch_zip(os.path.join(out, "legacy_pid5_in_zip.pt"), dumps({"t": v2(Storage("storage", torch.FloatStorage, "0", "cpu", 1, None), 0, (1,), (1,))}),
                    {"0": one})
    cases["legacy_pid5_in_zip.pt"] = "storage persistent id has 6 fields (torch expects 5"
    small = os.path.join(out, "_small.pt")
    torch.save({"w": torch.ones(2)}, small)
    good = open(small, "rb").read()
    os.remove(small)
    eocd = good.rindex(b"PK\x05\x06")
    open(os.path.join(out, "eocd_comment_overrun.pt"), "wb").write(good[:eocd + 20] + struct.pack("<H", 500))
    cases["eocd_comment_overrun.pt"] = "comment of 500 bytes runs past the end of the file (0 bytes remain)"
    # Terminal injection in refusals: every string from the file is escaped, and the error stays one line.
    esc = "\x1b]0;pwned\x07\x1b[2J\r\nall checks passed\x1b[0m"
    clean = pickle.dumps({"w": 1}, protocol=2)
    # (A GLOBAL opcode ends its module name at a newline, so this one carries ESC and CR only.)
    zip_raw(os.path.join(out, "escape_global.pt"), [("data.pkl", evil_pickle("os" + esc.replace("\n", ""), "system")), ("version", b"3\n")])
    cases["escape_global.pt"] = "refused global 'os\\x1b]0;pwned\\x07\\x1b[2J\\rall checks passed\\x1b[0m.system'"
    zip_raw(os.path.join(out, "escape_pid_kind.pt"), [("data.pkl", b"\x80\x02X" + struct.pack("<I", len(esc.encode())) + esc.encode() + b"\x85Q."),
                                                     ("version", b"3\n")])
    cases["escape_pid_kind.pt"] = "persistent id of kind '\\x1b]0;pwned"
    zip_raw(os.path.join(out, "escape_byteorder.pt"), [("data.pkl", clean), ("byteorder", esc.encode()), ("version", b"3\n")])
    cases["escape_byteorder.pt"] = "unknown byteorder record '\\x1b]0;pwned"
    zip_raw(os.path.join(out, "escape_version.pt"), [("data.pkl", clean), ("version", esc.encode()[:60])])
    cases["escape_version.pt"] = "unsupported archive version '\\x1b]0;pwned"
    zip_raw(os.path.join(out, "escape_member.pt"), [("data.pkl", clean), ("version", b"3\n"), (esc, b"x")])
    cases["escape_member.pt"] = "unexpected member 'archive/\\x1b]0;pwned"
    hdr = json.dumps({esc: {"dtype": "F7", "shape": [1], "data_offsets": [0, 4]}}).encode()
    open(os.path.join(out, "escape_safetensors_dtype.safetensors"), "wb").write(struct.pack("<Q", len(hdr)) + hdr + one)
    cases["escape_safetensors_dtype.safetensors"] = "tensor '\\x1b]0;pwned"

    # Accepted, and printed safely.
    torch.save(OrderedDict([(esc, torch.ones(2)), ("args", argparse.Namespace(note=esc, **{esc: 1}))]),
               os.path.join(out, "escape_names.pt"))
    accepted["escape_names.pt"] = "a tensor name, an object name and an object value full of ESC, CR and LF"
    from safetensors.torch import save_file
    save_file({esc: torch.ones(2)}, os.path.join(out, "escape_metadata.safetensors"), metadata={esc: esc, "bidi": "\u202etxt.exe"})
    accepted["escape_metadata.safetensors"] = "a tensor name, a metadata key and values with ESC, CR, LF and a bidi override"
    me = []
    me.append(me)
    torch.save({"w": torch.ones(2), "loop": me}, os.path.join(out, "self_containing_object.pt"))
    accepted["self_containing_object.pt"] = "a list that contains itself, without tensors: one object, printed as Python prints it"
    accepted["memo_bomb.pt"] = "2^199 paths through 200 shared lists, without tensors: one object, rendered truncated"
    write_json(os.path.join(out, "cases.json"), cases)
    write_json(os.path.join(out, "accepted.json"), accepted)
    print("hostile round 2: %d refused, %d accepted" % (len(cases), len(accepted)))


GROUPS = {"readers": readers, "convert": convert, "verify": verify, "sample": sample, "hostile": hostile, "hostile2": hostile_round2}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("groups", nargs="*", choices=[[]] + list(GROUPS), help="fixture groups (default: all)")
    a = ap.parse_args()
    for name in a.groups or GROUPS:
        GROUPS[name]()

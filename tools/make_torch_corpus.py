#!/usr/bin/env python3
"""Writes the reader corpus: small files in every layout torch and safetensors load (and some they
refuse), with the values the real loaders read. DiTKit's readers must agree with them file by file
(Tests/DiTKitFormatsTests/TorchCorpusTests.swift): the same tensors, and the same bytes.

This is the independent check on the readers: `verify --against` reads both sides through DiTKit
and cannot see a reader bug. Here the other side is torch.load(weights_only=True) (or
safetensors.torch.load_file) run once, when the corpus is generated.

Run in the torch virtualenv (outside the repository):
    ~/venvs/ditkit/bin/python tools/make_torch_corpus.py

Outputs go to Tests/Fixtures/corpus/: the files, and expected.json with one entry per file:
    {"loader": "...", "format": "...", "tensors": [{"name", "dtype", "shape", "sha256"}, ...]}
        torch (or safetensors) loads the file; sha256 is over each tensor's C-contiguous
        little-endian bytes, as `ditkit inspect --hash` prints it.
    {"loader": "...", "refused": "<the loader's error>"}
        the loader refuses the file; DiTKit must refuse it too.
    "ditkit_refuses": "<text of DiTKit's error>"
        present where DiTKit deliberately refuses a file torch loads (see "note").
Files torch.save cannot produce (storage views in the legacy stream, dtype reinterpretation with
_rebuild_tensor_v3, zero-element tensors with huge sizes) are assembled with Python's pickle module
and torch's own zip writer, then loaded by torch like any other.
"""
import hashlib
import io
import json
import os
import pickle
import struct
import sys
import warnings
from collections import OrderedDict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import DTYPE_NAMES, Storage, dumps, flatten, tensor_sha256, v2, v3, write_json, write_torch_zip  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "corpus")
DTYPES = dict(DTYPE_NAMES)
DTYPES.update({torch.uint16: "U16", torch.uint32: "U32", torch.uint64: "U64",
               torch.complex64: "C64", torch.complex128: "C128"})
MAGIC = 0x1950A86A20F9469CFC6C
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}

cases = OrderedDict()


# ------------------------------------------------------------------------------------------------
# Hand assembly (helpers shared with make_fixtures.py).

def zip_pid(storage_type, key, numel):
    return Storage("storage", storage_type, key, "cpu", numel)


def legacy_pid(storage_type, key, numel, view=None):
    return Storage("storage", storage_type, key, "cpu", numel, view)


def write_zip(name, pkl, records, byteorder="little"):
    return write_torch_zip(os.path.join(OUT, name), pkl, records, byteorder)


def write_legacy(name, main, storages, protocol=2):
    """The pre-1.6 stream: magic, protocol version, sys_info, main pickle, key list, then each
    storage as an int64 element count and its little-endian bytes. `storages`: key -> (numel, bytes)."""
    keys = list(storages)
    out = pickle.dumps(MAGIC, protocol=protocol) + pickle.dumps(1001, protocol=protocol)
    out += pickle.dumps(SYS_INFO, protocol=protocol) + main + pickle.dumps(keys, protocol=protocol)
    for k in keys:
        numel, data = storages[k]
        out += struct.pack("<q", numel) + data
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(out)
    return path


def raw(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def case(name, note, ditkit_refuses=None):
    cases[name] = {"note": note}
    if ditkit_refuses:
        cases[name]["ditkit_refuses"] = ditkit_refuses


def seeded(n, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.rand(n, generator=g) > 0.5
    if dtype.is_complex:
        return torch.randn(n, dtype=dtype, generator=g)
    if dtype.is_floating_point:
        return (torch.randn(n, generator=g) * 4).to(dtype)
    info = torch.iinfo(dtype)
    lo, hi = max(info.min, -(2 ** 62)), min(info.max, 2 ** 62)
    return torch.randint(lo, hi, (n,), generator=g, dtype=torch.int64).to(dtype)


ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16,
              torch.int8, torch.uint8, torch.bool, torch.complex64, torch.complex128]
NEW_DTYPES = [torch.float8_e4m3fn, torch.float8_e5m2, torch.uint16, torch.uint32, torch.uint64]


def views_dict(dtype=torch.float32):
    base = torch.arange(60).to(dtype).reshape(5, 12)
    cube = torch.arange(2 * 3 * 4).to(dtype).reshape(2, 3, 4)
    return OrderedDict([
        ("base", base),
        ("transposed", base.t()),
        ("sliced", base[1:4, 3:9]),
        ("stepped", base[::2, 1::3]),
        ("narrow_offset", base.narrow(1, 5, 4)),
        ("row", base[3]),
        ("column", base[:, 7]),
        ("element", base[2, 5]),
        ("expanded", base[0, :3].unsqueeze(0).expand(4, 3)),
        ("permuted", cube.permute(2, 0, 1)),
        ("unsqueezed", base[1].unsqueeze(1)),
        ("diagonal", base[:, :5].diagonal()),
        ("overlapping", torch.as_strided(base, (6, 4), (1, 1), 3)),
        ("empty_rows", base[:, 4:4]),
        ("empty_offset", base[5:]),
        ("empty_transposed", torch.zeros(0, 3).to(dtype).t()),
    ])


def build():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))

    # --- Real torch.save, zip ---------------------------------------------------------------------
    dtypes = OrderedDict((str(d).replace("torch.", ""), seeded(7, d, k)) for k, d in enumerate(ALL_DTYPES + NEW_DTYPES))
    dtypes["scalar"] = torch.tensor(2.5)
    dtypes["zero_size"] = torch.zeros(0, 4)
    torch.save(dtypes, os.path.join(OUT, "zip_dtypes.pt"))
    case("zip_dtypes.pt", "every dtype torch.save writes; float8 and uint16/32/64 use _rebuild_tensor_v3 over UntypedStorage")
    for dt, tag in [(torch.float32, "f32"), (torch.float16, "f16"), (torch.bfloat16, "bf16"), (torch.int8, "i8"),
                    (torch.float64, "f64"), (torch.bool, "bool"), (torch.complex64, "c64")]:
        v = views_dict(dt) if dt != torch.bool else OrderedDict((k, t > 20) for k, t in views_dict().items())
        torch.save(v, os.path.join(OUT, "zip_views_%s.pt" % tag))
        case("zip_views_%s.pt" % tag, "views: transposes, slices, steps, offsets, expand, permute, overlap, empty views")
    shared = torch.arange(32, dtype=torch.float32)
    param = torch.nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
    torch.save(OrderedDict([("a", shared[:8]), ("b", shared[8:24].reshape(4, 4)), ("a_again", shared[:8]),
                            ("whole", shared), ("param", param), ("param_t", param.t())]),
               os.path.join(OUT, "zip_shared.pt"))
    case("zip_shared.pt", "tensors sharing one storage, memo references, parameters")
    for p in (3, 4, 5):
        torch.save(views_dict(), os.path.join(OUT, "zip_views_p%d.pt" % p), pickle_protocol=p)
        case("zip_views_p%d.pt" % p, "views at pickle protocol %d" % p)
    torch.save({"expanded": torch.tensor([1.25]).expand(512, 512), "broadcast": torch.arange(4.0).expand(3, 1000, 4)},
               os.path.join(OUT, "zip_expand.pt"))
    case("zip_expand.pt", "stride-0 views that expand a few elements to a megabyte (within DiTKit's expansion limit)")

    # Big-endian archives: what torch.save writes on a big-endian host (byteorder 'big', each storage
    # swapped in units of its own dtype), rebuilt with torch's writer from the little-endian files.
    for src in ("zip_dtypes.pt", "zip_views_f64.pt", "zip_views_f16.pt", "zip_views_c64.pt"):
        big_endian_copy(src, src.replace(".pt", "_big_endian.pt"))

    # --- Hand-assembled zip archives ----------------------------------------------------------------
    floats = torch.arange(16, dtype=torch.float32) * 1.5 - 3
    fs = zip_pid(torch.FloatStorage, "0", 16)
    us = zip_pid(torch.UntypedStorage, "1", 40)
    untyped = bytes(range(7, 47))
    sd = OrderedDict([
        ("as_f32", v2(fs, 2, (3, 4), (4, 1))),
        ("as_f16", v3(fs, 3, (4, 5), (6, 1), torch.float16)),
        ("as_i8_strided", v3(fs, 5, (3, 7), (9, 2), torch.int8)),
        ("as_f64_t", v3(fs, 1, (3, 2), (1, 3), torch.float64)),
        ("as_bf16_expand", v3(fs, 7, (3, 4), (0, 3), torch.bfloat16)),
        ("untyped_f32", v3(us, 2, (2, 4), (4, 1), torch.float32)),
        ("untyped_u16_t", v3(us, 1, (3, 5), (1, 4), torch.uint16)),
        ("untyped_i64", v3(us, 0, (5,), (1,), torch.int64)),
    ])
    records = OrderedDict([("0", raw(floats)), ("1", untyped)])
    write_zip("zip_v3_reinterpret.pt", dumps(sd), records)
    case("zip_v3_reinterpret.pt", "_rebuild_tensor_v3 reading a typed storage as another dtype, and untyped storages")
    write_zip("zip_v3_reinterpret_big_endian.pt", dumps(sd), OrderedDict([("0", swap(raw(floats), 4)), ("1", untyped)]), "big")
    case("zip_v3_reinterpret_big_endian.pt", "the same, big-endian: torch swaps each storage by its own element size "
         "(untyped storages not at all), then the tensor reads the swapped bytes")

    fs0 = zip_pid(torch.FloatStorage, "0", 0)
    zero = OrderedDict([
        ("huge_stride", v2(fs0, 2 ** 62, (0, 2 ** 62), (2 ** 62, 2 ** 62))),
        ("huge_trailing", v2(fs0, 0, (0, 2 ** 40, 2 ** 40), (1, 1, 1))),
        ("contiguous_overflow", v2(fs0, 0, (0, 2 ** 32, 2 ** 32), (2 ** 62, 2 ** 32, 1))),
        ("max_offset", v2(fs0, 2 ** 63 - 1, (0,), (1,))),
        ("zero_then_huge", v2(fs0, 5, (2 ** 62, 0), (2 ** 62, 2 ** 62))),
        ("f64_max_offset", v3(fs0, 2 ** 62, (3, 0), (2 ** 61, 1), torch.float64)),
    ])
    write_zip("zip_zero_element_huge.pt", dumps(zero), OrderedDict([("0", b"")]))
    case("zip_zero_element_huge.pt", "zero-element tensors with huge sizes, strides and storage offsets: torch loads them")
    write_zip("zip_numel_overflow.pt", dumps({"t": v2(fs0, 0, (2 ** 40, 2 ** 40, 0), (1, 1, 1))}), OrderedDict([("0", b"")]))
    case("zip_numel_overflow.pt", "sizes whose running product overflows before a zero: torch refuses")
    write_zip("zip_pid6.pt", dumps({"t": v2(Storage("storage", torch.FloatStorage, "0", "cpu", 4, None), 0, (4,), (1,))}),
              OrderedDict([("0", raw(floats[:4]))]))
    case("zip_pid6.pt", "a six-field (legacy) persistent id inside a zip: torch refuses")
    write_zip("zip_stride_2p63.pt", dumps({"t": v2(zip_pid(torch.FloatStorage, "0", 4), 0, (1,), (2 ** 63,))}),
              OrderedDict([("0", raw(floats[:4]))]))
    case("zip_stride_2p63.pt", "a stride of 2^63: torch refuses")

    write_zip("zip_rank65.pt", dumps({"t": v2(zip_pid(torch.FloatStorage, "0", 1), 0, (1,) * 65, (1,) * 65)}),
              OrderedDict([("0", raw(floats[:1]))]))
    case("zip_rank65.pt", "a tensor of 65 dimensions: torch has no limit, DiTKit stops at NumPy's 64",
         ditkit_refuses="dimensions (at most 64)")

    # --- Real torch.save, legacy stream -------------------------------------------------------------
    legacy_ok = OrderedDict((k, v) for k, v in dtypes.items() if v.dtype not in NEW_DTYPES)
    torch.save(legacy_ok, os.path.join(OUT, "legacy_dtypes.pt"), _use_new_zipfile_serialization=False)
    case("legacy_dtypes.pt", "every dtype the legacy stream can hold")
    torch.save({"f8": dtypes["float8_e4m3fn"]}, os.path.join(OUT, "legacy_float8.pt"), _use_new_zipfile_serialization=False)
    case("legacy_float8.pt", "float8 in the legacy stream: saved over an UntypedStorage, which torch cannot load back")
    for dt, tag in [(torch.float32, "f32"), (torch.float16, "f16"), (torch.int8, "i8"), (torch.complex64, "c64")]:
        torch.save(views_dict(dt), os.path.join(OUT, "legacy_views_%s.pt" % tag), _use_new_zipfile_serialization=False)
        case("legacy_views_%s.pt" % tag, "views in the legacy stream")
    torch.save(OrderedDict([("a", shared[:8]), ("b", shared[8:24].reshape(4, 4)), ("whole", shared), ("param", param)]),
               os.path.join(OUT, "legacy_shared.pt"), _use_new_zipfile_serialization=False)
    case("legacy_shared.pt", "shared storages in the legacy stream")
    for p in (1, 3, 4, 5):
        torch.save(views_dict(), os.path.join(OUT, "legacy_views_p%d.pt" % p), _use_new_zipfile_serialization=False,
                   pickle_protocol=p)
        case("legacy_views_p%d.pt" % p, "legacy stream at pickle protocol %d (magic number as %s)" %
             (p, "a text LONG" if p < 2 else "LONG1 in a frame" if p >= 4 else "LONG1"))

    # --- Hand-assembled legacy streams: storage views ----------------------------------------------
    root = torch.arange(24, dtype=torch.float32) * 0.25 + 1
    rbytes = raw(root)

    def rv(view, storage_type=torch.FloatStorage, numel=24):
        return legacy_pid(storage_type, "100", numel, view)
    write_legacy("legacy_view.pt", dumps(OrderedDict([
        ("whole", v2(rv(None), 0, (4, 6), (6, 1))),
        ("view", v2(rv(("200", 4, 8)), 0, (8,), (1,))),
        ("view_strided", v2(rv(("200", 4, 8)), 0, (2, 3), (3, 2))),
        ("view2_t", v2(rv(("201", 10, 12)), 2, (3, 2), (1, 5))),
    ])), OrderedDict([("100", (24, rbytes))]))
    case("legacy_view.pt", "storage views (the sixth persistent-id field) read by tensors of the storage's dtype")
    write_legacy("legacy_view_v3_reinterpret.pt", dumps(OrderedDict([
        ("pos_embed", v3(rv(("200", 4, 8)), 0, (2, 4), (4, 1), torch.float16)),
    ])), OrderedDict([("100", (24, rbytes))]))
    case("legacy_view_v3_reinterpret.pt", "the issue-18 bug: a tensor of another dtype over a storage view; the view's "
         "offset and size are in the storage's elements, the tensor's offset in its own")
    write_legacy("legacy_view_v3_mixed.pt", dumps(OrderedDict([
        ("as_f16", v3(rv(("200", 4, 8)), 0, (16,), (1,), torch.float16)),
        ("as_i8", v3(rv(("201", 10, 6)), 3, (4, 5), (5, 1), torch.int8)),
        ("as_f64", v3(rv(("202", 2, 12)), 1, (2, 2), (1, 2), torch.float64)),
        ("as_f32", v3(rv(("203", 6, 6)), 1, (5,), (1,), torch.float32)),
        ("whole_f16_t", v3(rv(None), 5, (4, 3), (1, 7), torch.float16)),
    ])), OrderedDict([("100", (24, rbytes))]))
    case("legacy_view_v3_mixed.pt", "several views of one storage read as several dtypes, strided")
    write_legacy("legacy_view_at_end.pt", dumps(OrderedDict([
        ("tail", v3(rv(("200", 16, 8)), 0, (16,), (1,), torch.float16)),
    ])), OrderedDict([("100", (24, rbytes))]))
    case("legacy_view_at_end.pt", "a view ending exactly at the end of its storage, read as another dtype")
    write_legacy("legacy_view_clamped.pt", dumps(OrderedDict([
        ("clamped", v2(rv(("200", 20, 100)), 0, (4,), (1,))),
    ])), OrderedDict([("100", (24, rbytes))]))
    case("legacy_view_clamped.pt", "a view declared past the end of its storage: torch slices it short (Python slice "
         "semantics) and the tensor reads only what is there")
    write_legacy("legacy_view_past_end.pt", dumps(OrderedDict([
        ("past", v2(rv(("200", 20, 100)), 0, (5,), (1,))),
    ])), OrderedDict([("100", (24, rbytes))]))
    case("legacy_view_past_end.pt", "a tensor reading past the (shortened) view: torch refuses")
    write_legacy("legacy_view_other_dtype.pt", dumps(OrderedDict([
        ("h", v2(legacy_pid(torch.HalfStorage, "100", 48, ("200", 6, 10)), 0, (10,), (1,))),
        ("f", v2(rv(None), 0, (24,), (1,))),
    ])), OrderedDict([("100", (48, rbytes))]))  # counted in the first reference's dtype, as torch reads it
    case("legacy_view_other_dtype.pt", "the same root storage named with two storage types (Half and Float, same bytes)",
         ditkit_refuses="used with two different dtypes")
    write_legacy("legacy_view_key_reused.pt", dumps(OrderedDict([
        ("first", v2(rv(("200", 4, 8)), 0, (8,), (1,))),
        ("second", v2(rv(("200", 12, 8)), 0, (8,), (1,))),
    ])), OrderedDict([("100", (24, rbytes))]))
    case("legacy_view_key_reused.pt", "one view key declared twice with different offsets (torch keeps the first)",
         ditkit_refuses="view key '200' is declared twice")
    write_legacy("legacy_view_key_is_root.pt", dumps(OrderedDict([
        ("whole", v2(rv(None), 0, (24,), (1,))),
        ("view", v2(rv(("100", 4, 8)), 0, (8,), (1,))),
    ])), OrderedDict([("100", (24, rbytes))]))
    case("legacy_view_key_is_root.pt", "a view whose key is a root storage's key (torch returns the root)",
         ditkit_refuses="view key '100' is also a storage key")
    write_legacy("legacy_pid5.pt", dumps({"t": v2(Storage("storage", torch.FloatStorage, "100", "cpu", 24), 0, (24,), (1,))}),
                 OrderedDict([("100", (24, rbytes))]))
    case("legacy_pid5.pt", "a five-field (zip-style) persistent id in the legacy stream: torch refuses")
    write_legacy("legacy_pid7.pt", dumps({"t": v2(Storage("storage", torch.FloatStorage, "100", "cpu", 24, None, 0), 0, (24,), (1,))}),
                 OrderedDict([("100", (24, rbytes))]))
    case("legacy_pid7.pt", "a seven-field persistent id: torch refuses")

    # --- safetensors, written and read by the safetensors library -----------------------------------
    from safetensors.torch import save_file
    from safetensors.torch import _SIZE
    st = OrderedDict((k, v.contiguous()) for k, v in dtypes.items() if v.dtype in _SIZE)
    st["empty_1d"] = torch.zeros(0, dtype=torch.int8)
    save_file(st, os.path.join(OUT, "st_dtypes.safetensors"), metadata={"source": "make_torch_corpus"})
    case("st_dtypes.safetensors", "every dtype the safetensors library writes, scalars and empty tensors")
    save_file({}, os.path.join(OUT, "st_empty.safetensors"))
    case("st_empty.safetensors", "no tensors at all")

    expected = OrderedDict()
    for name, info in cases.items():
        expected[name] = expect(name, info)
    write_json(os.path.join(OUT, "expected.json"), expected)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("corpus: wrote %d files, %d bytes" % (len(cases), total))


def swap(data, unit):
    if unit <= 1:
        return data
    b = bytearray(data)
    for i in range(0, len(b) - len(b) % unit, unit):
        b[i:i + unit] = b[i:i + unit][::-1]
    return bytes(b)


def storage_types(path):
    """key -> element size of each storage record of a torch zip, read from its data.pkl."""
    import zipfile
    z = zipfile.ZipFile(path)
    pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
    sizes = {}

    class Inert:
        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            pass

    class U(pickle.Unpickler):
        def find_class(self, module, name):
            if module.startswith("torch") and name.endswith("Storage"):
                return name
            if module.startswith("torch"):
                return Inert
            return super().find_class(module, name)

        def persistent_load(self, pid):
            _, storage_type, key = pid[:3]
            if storage_type in ("UntypedStorage", torch.UntypedStorage):
                sizes[key] = 1
            else:
                sizes[key] = getattr(torch, storage_type).dtype
            return None
    U(io.BytesIO(z.read(pkl))).load()
    return {k: (1 if v == 1 else (torch.empty(0, dtype=v).element_size() // (2 if v.is_complex else 1))) for k, v in sizes.items()}


def big_endian_copy(src, dst):
    from make_fixtures import rewrite_archive
    units = storage_types(os.path.join(OUT, src))

    def to_big(name, data):
        if name == "byteorder":
            return b"big"
        if name.startswith("data/"):
            return swap(data, units[name[5:]])
        return data
    rewrite_archive(os.path.join(OUT, src), os.path.join(OUT, dst), to_big)
    case(dst, "%s as written on a big-endian host (byteorder 'big', storages swapped per storage dtype)" % src)


def expect(name, info):
    path = os.path.join(OUT, name)
    out = OrderedDict()
    if name.endswith(".safetensors"):
        from safetensors.torch import load_file
        out["loader"] = "safetensors.torch.load_file"
        out["format"] = "safetensors"
        obj = load_file(path)
        header_len = struct.unpack("<Q", open(path, "rb").read(8))[0]
        header = json.loads(open(path, "rb").read(8 + header_len)[8:])
        order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
        tensors = [(k, obj[k]) for k in order]
    else:
        out["format"] = "torch-legacy" if not open(path, "rb").read(2) == b"PK" else "torch-zip"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    obj = torch.load(path, weights_only=True)
                    out["loader"] = "torch.load(weights_only=True)"
                except pickle.UnpicklingError as e:
                    # The weights-only unpickler lacks some opcodes of protocols 1, 4 and 5 in the legacy
                    # stream (LONG, FRAME); these files are ours, so the full unpickler is safe here.
                    if "Unsupported operand" not in str(e):
                        raise
                    obj = torch.load(path, weights_only=False)
                    out["loader"] = "torch.load(weights_only=False)"
        except Exception as e:
            out["loader"] = "torch.load(weights_only=True)"
            out["refused"] = str(e).strip().splitlines()[0][:300]
            out.update(info)
            return out
        tensors, _ = flatten(obj)
    out["tensors"] = [{"name": n, "dtype": DTYPES[t.dtype], "shape": list(t.shape), "sha256": tensor_sha256(t)} for n, t in tensors]
    out.update(info)
    return out


if __name__ == "__main__":
    build()

#!/usr/bin/env python3
"""Writes the expected bytes of ggml's reference quantizers for DiTKit's block-type tests.

    python tools/make_quant_vectors.py [--install]

The oracle is ggml itself: llama-cpp-python (PyPI) builds libggml from source, and this script
calls its `ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix=NULL)` through
ctypes. Without an importance matrix that is `quantize_row_<type>_ref` for every type here.
`--install` pip-installs llama-cpp-python into the running interpreter first (a source build that
takes several minutes); `--ggml PATH` uses a libggml-base.so built some other way instead. No ggml
code is committed; only its outputs are.

Outputs, in Tests/Fixtures/quants/:
  rows.f32           CASES rows of ROW float32 values (little-endian), named in cases.json
  <TYPE>.bin         ggml's bytes for those rows, row after row, for each of the ten types
  cases.json         the row names, the llama-cpp-python version, and for the sweep below the
                     SHA-256 of ggml's bytes per type

The sweep is 2048 rows of 256 values that the Swift tests regenerate exactly (SplitMix64 bits,
integer-to-float conversions, one float32 division and power-of-two scales: no libm), so it is
checked without committing its 2 MB of input:
  row r: generator SplitMix64(seed = r); kind = r % 6; scale = 2^((7r) % 41 - 30)
  value i: b = next(); u = (int(b >> 40) - 2^23) * 2^-23          (exact, in [-1, 1))
    kind 0: u
    kind 1: u / (((next() >> 41) + 1) * 2^-23)                      (heavy tails)
    kind 2: u if (b & 15) >= 14 else 0                              (sparse)
    kind 3: |u|                                                     (one-signed)
    kind 4: (int(b >> 60) - 8) * 0.125                              (on a grid)
    kind 5: u * 64 if i == r % 256 else u                           (one outlier)
  x = float32(value) * scale
"""
import argparse
import ctypes
import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "quants")
TYPES = {"Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q2_K": 10, "Q3_K": 11, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14}
ROW = 256
MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15


def splitmix(seed, count):
    """The first `count` outputs of SplitMix64 seeded with `seed` (DiTKitCore.SeededRandom)."""
    out = []
    state = seed
    for _ in range(count):
        state = (state + GAMMA) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def sweep_row(r):
    kind, scale = r % 6, np.float32(2.0 ** ((7 * r) % 41 - 30))
    bits = splitmix(r, 512 if kind == 1 else 256)
    vals = []
    k = 0
    for i in range(256):
        b = bits[k]; k += 1
        u = np.float32(float((b >> 40) - (1 << 23))) * np.float32(2.0 ** -23)
        if kind == 0:
            v = u
        elif kind == 1:
            c = bits[k]; k += 1
            v = u / (np.float32(float((c >> 41) + 1)) * np.float32(2.0 ** -23))
        elif kind == 2:
            v = u if (b & 15) >= 14 else np.float32(0)
        elif kind == 3:
            v = np.float32(abs(u))
        elif kind == 4:
            v = np.float32(float((b >> 60) - 8)) * np.float32(0.125)
        else:
            v = u * np.float32(64) if i == r % 256 else u
        vals.append(np.float32(v) * scale)
    return np.array(vals, dtype=np.float32)


def cases():
    """Named rows of ROW values: the shapes of data a quantizer can get wrong."""
    rng = np.random.default_rng(14)
    n = ROW
    normal = lambda s: (rng.standard_normal(n) * s).astype(np.float32)
    out = [
        ("normal", normal(1.0)),
        ("normal_0.02", normal(0.02)),
        ("student_t2", (rng.standard_t(2, n) * 0.02).astype(np.float32)),
        ("zeros", np.zeros(n, np.float32)),
        ("negative_zeros", np.full(n, -0.0, np.float32)),
        ("tiny_1e-7", normal(1e-7)),
        ("tiny_1e-16", normal(1e-16)),
        ("tiny_1e-30", normal(1e-30)),
        ("constant", np.full(n, 0.37, np.float32)),
        ("constant_negative", np.full(n, -1.5, np.float32)),
        ("outlier", np.where(np.arange(n) == 77, np.float32(5.0), normal(0.02)).astype(np.float32)),
        ("uniform_positive", rng.uniform(0, 1, n).astype(np.float32)),
        ("uniform_negative", (-rng.uniform(0, 1, n)).astype(np.float32)),
        ("alternating", np.where(np.arange(n) % 2 == 0, 1.0, -1.0).astype(np.float32)),
        ("half_zero_groups", np.where((np.arange(n) // 16) % 2 == 0, 0.0, rng.standard_normal(n)).astype(np.float32)),
        ("large_1e3", normal(1e3)),
        ("near_f16_max", normal(2e4)),
        ("ramp", np.linspace(-1, 1, n, dtype=np.float32)),
        ("sparse", np.where(rng.uniform(0, 1, n) < 0.05, np.sign(rng.standard_normal(n)), 0.0).astype(np.float32)),
        ("grid_int4", (rng.integers(-8, 8, n)).astype(np.float32)),
        ("bf16_values", (normal(0.05).view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)),
        ("f16_subnormal_scales", normal(1e-5)),
    ]
    return out


def load_ggml(path=None):
    """(libggml with ggml_quantize_chunk, a description of it): `path`, or llama-cpp-python's copy."""
    if path:
        candidates, version = [path], "libggml at " + os.path.basename(os.path.realpath(path))
    else:
        import llama_cpp
        lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
        version = "llama-cpp-python " + llama_cpp.__version__
        candidates = [p for name in ["libggml-base.so", "libggml.so"] for p in sorted(glob.glob(os.path.join(lib_dir, name + "*")))]
    for path in candidates:
        lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        if hasattr(lib, "ggml_quantize_chunk"):
            lib.ggml_quantize_chunk.restype = ctypes.c_size_t
            lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
            lib.ggml_row_size.restype = ctypes.c_size_t
            lib.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
            lib.ggml_quantize_init.argtypes = [ctypes.c_int]
            return lib, version
    sys.exit("no libggml with ggml_quantize_chunk in " + ", ".join(candidates))


def quantize(lib, code, rows):
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    nrows, per_row = rows.shape
    out = np.zeros(lib.ggml_row_size(code, per_row) * nrows, np.uint8)
    lib.ggml_quantize_init(code)
    n = lib.ggml_quantize_chunk(code, rows.ctypes.data, out.ctypes.data, 0, nrows, per_row, None)
    assert n == out.size, (code, n, out.size)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--install", action="store_true", help="pip install llama-cpp-python first")
    ap.add_argument("--ggml", help="path of a libggml-base.so to use instead of llama-cpp-python's")
    args = ap.parse_args()
    if args.install:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "llama-cpp-python"])
    lib, version = load_ggml(args.ggml)
    os.makedirs(ROOT, exist_ok=True)

    named = cases()
    rows = np.stack([r for _, r in named])
    rows.astype("<f4").tofile(os.path.join(ROOT, "rows.f32"))
    for name, code in TYPES.items():
        quantize(lib, code, rows).tofile(os.path.join(ROOT, name + ".bin"))

    sweep = np.stack([sweep_row(r) for r in range(2048)])
    # gguf-py's quantizers are bit-exact ports for the 32-value types: a cross-check of the oracle.
    try:
        import gguf
        from gguf import quants
        for name in ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]:
            ours = quantize(lib, TYPES[name], sweep)
            theirs = quants.quantize(sweep, gguf.GGMLQuantizationType[name]).reshape(-1)
            assert np.array_equal(ours, theirs), name + ": ggml and gguf-py disagree on the sweep"
    except ImportError:
        pass
    meta = {
        "generator": "tools/make_quant_vectors.py",
        "oracle": "ggml_quantize_chunk (imatrix NULL) of " + version,
        "row_length": ROW,
        "rows": [name for name, _ in named],
        "sweep": {"rows": 2048, "row_length": 256,
                  "sha256": {name: hashlib.sha256(quantize(lib, code, sweep).tobytes()).hexdigest() for name, code in TYPES.items()}},
    }
    with open(os.path.join(ROOT, "cases.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("wrote", ROOT)


if __name__ == "__main__":
    main()

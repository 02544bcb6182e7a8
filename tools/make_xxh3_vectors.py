#!/usr/bin/env python3
"""Known answers for XXH3-128, the per-tensor checksum of format-3 bundles (FORMAT.md), from the
Python binding of the reference implementation (pip `xxhash`, which bundles xxHash's C code).

    python tools/make_xxh3_vectors.py      # needs torch and xxhash

Writes Tests/Fixtures/readers/xxh3_vectors.json:
- "patterns": XXH3-128 of the byte strings b[i] = (31 * i + 7) mod 256, i < length, for lengths
  that reach every code path of XXH3-128 (0, 1-3, 4-8, 9-16, 17-128, 129-240 bytes, then the
  stripe loop, one 1024-byte block and many);
- "train_checkpoint.pt": the XXH3-128 and SHA-256 of every tensor of readers/train_checkpoint.pt
  as torch loads it (its C-contiguous little-endian bytes), under DiTKit's dotted names.
"""
import hashlib
import json
import os
import sys

import torch
import xxhash

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ROOT, flatten, write_json  # noqa: E402

LENGTHS = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 64, 127, 128, 129, 200, 239, 240, 241, 255, 256, 1023, 1024,
           1025, 4096, 65536, 100003, 1 << 20]


def pattern(n):
    return bytes((31 * i + 7) % 256 for i in range(n))


def main():
    out = {"producer": "python xxhash %s (xxHash %s)" % (xxhash.VERSION, xxhash.XXHASH_VERSION),
           "pattern": "b[i] = (31 * i + 7) mod 256",
           "patterns": [{"length": n, "xxh3_128": xxhash.xxh3_128_hexdigest(pattern(n))} for n in LENGTHS]}
    ckpt = torch.load(os.path.join(ROOT, "readers", "train_checkpoint.pt"), map_location="cpu", weights_only=False)
    tensors, _ = flatten(ckpt)
    listing = {}
    for name, t in tensors:
        data = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        listing[name] = {"xxh3_128": xxhash.xxh3_128_hexdigest(data), "sha256": hashlib.sha256(data).hexdigest()}
    out["train_checkpoint.pt"] = listing
    write_json(os.path.join(ROOT, "readers", "xxh3_vectors.json"), out)


if __name__ == "__main__":
    main()

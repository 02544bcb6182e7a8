"""Read a DiTKit bundle with numpy only (json + numpy.memmap), from FORMAT.md alone.

    from read_ditkit import read_ditkit
    tensors = read_ditkit("model.ditkit", dequantize=True)   # {name: numpy array}
    read_ditkit("model.ditkit", verify=True)   # also checks every record's checksum (format 3: pip xxhash)
"""
import hashlib
import json
import os

import numpy as np

NUMPY = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I8": "i1", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}
# Block types (format version 2): (values per block, bytes per block).
BLOCKS = {"Q8_0": (32, 34), "Q4_0": (32, 18), "Q4_1": (32, 20), "Q5_0": (32, 22), "Q5_1": (32, 24),
          "Q2_K": (256, 84), "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210)}


def _f16(b, at):
    return b[:, at:at + 2].copy().view("<f2").astype(np.float32)          # (blocks, 1)


def _bits(b, n):
    """Bit i of each byte column, as (blocks, 8, n): bit-major, then byte."""
    return (b[:, None, :n] >> np.arange(8, dtype=np.uint8)[None, :, None]) & 1


def dequantize_blocks(kind, b):
    """float32 values of (blocks, bytes) uint8 `b` of block type `kind`, as FORMAT.md computes them."""
    f = np.float32
    if kind == "Q8_0":
        return b[:, 2:].view(np.int8).astype(f) * _f16(b, 0)
    if kind in ("Q4_0", "Q4_1", "Q5_0", "Q5_1"):
        qs = b[:, {"Q4_0": 2, "Q4_1": 4, "Q5_0": 6, "Q5_1": 8}[kind]:]
        n = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int32)             # n(e)
        if kind in ("Q5_0", "Q5_1"):
            at = 2 if kind == "Q5_0" else 4
            qh = b[:, at:at + 4].copy().view("<u4")
            n |= (((qh >> np.arange(32, dtype=np.uint32)) & 1) << 4).astype(np.int32)
        d = _f16(b, 0)
        if kind in ("Q4_1", "Q5_1"):
            return d * n.astype(f) + _f16(b, 2)
        return d * (n - (8 if kind == "Q4_0" else 16)).astype(f)
    if kind in ("Q2_K", "Q3_K"):
        qs_at = 16 if kind == "Q2_K" else 32
        qs = b[:, qs_at:qs_at + 64].reshape(-1, 2, 1, 32)
        q2 = ((qs >> (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]) & 3).reshape(-1, 16, 16).astype(np.int32)
        if kind == "Q2_K":
            sc = b[:, :16]
            dl = (_f16(b, 80) * (sc & 15).astype(f))[:, :, None]
            ml = (_f16(b, 82) * (sc >> 4).astype(f))[:, :, None]
            return (dl * q2.astype(f) - ml).reshape(-1, 256)
        sc = b[:, 96:108]
        low = np.concatenate([sc[:, :8] & 15, sc[:, :8] >> 4], axis=1)
        high = (sc[:, 8:12][:, None, :] >> (2 * np.arange(4, dtype=np.uint8))[None, :, None]) & 3
        s6 = (low | (high.reshape(-1, 16) << 4)).astype(np.int32) - 32
        hbit = _bits(b, 32).reshape(-1, 16, 16).astype(np.int32)                   # bit e/32 of hmask[e%32]
        dl = (_f16(b, 108) * s6.astype(f))[:, :, None]
        return (dl * (q2 - 4 * (1 - hbit)).astype(f)).reshape(-1, 256)
    if kind in ("Q4_K", "Q5_K"):
        sc = b[:, 4:16]
        S = np.concatenate([sc[:, 0:4] & 63, (sc[:, 8:12] & 15) | ((sc[:, 0:4] >> 6) << 4)], axis=1)
        M = np.concatenate([sc[:, 4:8] & 63, (sc[:, 8:12] >> 4) | ((sc[:, 4:8] >> 6) << 4)], axis=1)
        qs = b[:, 16:144] if kind == "Q4_K" else b[:, 48:176]
        q = np.stack([qs.reshape(-1, 4, 32) & 15, qs.reshape(-1, 4, 32) >> 4], axis=2).reshape(-1, 8, 32).astype(np.int32)
        if kind == "Q5_K":
            q |= _bits(b[:, 16:48], 32).astype(np.int32) << 4
        d1 = (_f16(b, 0) * S.astype(f))[:, :, None]
        m1 = (_f16(b, 2) * M.astype(f))[:, :, None]
        return (d1 * q.astype(f) - m1).reshape(-1, 256)
    if kind == "Q6_K":
        ql, qh = b[:, :128].reshape(-1, 2, 64), b[:, 128:192].reshape(-1, 2, 32)
        low = np.stack([ql & 15, ql >> 4], axis=2).reshape(-1, 2, 128)
        high = ((qh[:, :, None, :] >> (2 * np.arange(4, dtype=np.uint8))[None, None, :, None]) & 3).reshape(-1, 2, 128)
        q6 = (low | (high << 4)).astype(np.int32).reshape(-1, 16, 16) - 32
        d = (_f16(b, 208) * b[:, 192:208].view(np.int8).astype(f))[:, :, None]
        return (d * q6.astype(f)).reshape(-1, 256)
    raise ValueError("unknown block type " + kind)


def _checksum(manifest):
    """The member holding every record's checksum and a function computing it (FORMAT.md)."""
    if manifest["format_version"] >= 3:
        import xxhash   # XXH3-128, canonical hex; only needed to verify format-3 bundles
        return "xxh3_128", lambda b: xxhash.xxh3_128_hexdigest(b)
    return "sha256", lambda b: hashlib.sha256(b).hexdigest()


def read_ditkit(path, dequantize=False, verify=False):
    """Returns {name: array}; zero-copy memmap views unless a conversion is needed.

    BF16 tensors are widened to float32 (exact). With dequantize=True, I8 tensors become
    float32 values q * scale[row] and block types (Q8_0 ... Q6_K) float32 values; otherwise I8
    tensors stay int8 with their scales as NAME.scale, and block types come as their raw blocks,
    uint8 of shape shape[:-1] + [bytes per row]. With verify=True every tensor's and scale's bytes
    are checked against the manifest's checksum (SHA-256 in versions 1 and 2, XXH3-128 in 3)."""
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    if manifest.get("format") != "ditkit" or manifest.get("format_version") not in (1, 2, 3):
        raise ValueError("%s: not a DiTKit bundle of format version 1, 2 or 3" % path)
    member, checksum = _checksum(manifest) if verify else (None, None)
    blob = np.memmap(os.path.join(path, manifest["weights"]["file"]), dtype=np.uint8, mode="r")
    if blob.size != manifest["weights"]["bytes"]:
        raise ValueError("%s: weights.bin has %d bytes, the manifest says %d" % (path, blob.size, manifest["weights"]["bytes"]))

    def view(record):
        raw = blob[record["offset"]:record["offset"] + record["bytes"]]
        if verify and checksum(raw.tobytes()) != record[member]:
            raise ValueError("%s: the bytes at offset %d do not match their %s" % (path, record["offset"], member))
        if record["dtype"] in BLOCKS:
            values, size = BLOCKS[record["dtype"]]
            shape = record["shape"]
            if not shape or shape[-1] % values:
                raise ValueError("%s: %s tensor of shape %s does not divide into blocks" % (path, record["dtype"], shape))
            return raw.reshape(shape[:-1] + [shape[-1] // values * size])
        return raw.view(NUMPY[record["dtype"]]).reshape(record["shape"])

    out = {}
    for t in manifest["tensors"]:
        a = view(t)
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        if t["dtype"] in BLOCKS and dequantize:
            a = dequantize_blocks(t["dtype"], np.ascontiguousarray(a).reshape(-1, BLOCKS[t["dtype"]][1])).reshape(t["shape"])
        if "quantization" in t:
            scale = view(t["quantization"]["scale"])
            if dequantize:
                a = a.astype(np.float32) * scale.reshape((-1,) + (1,) * (a.ndim - 1))
            else:
                out[t["name"] + ".scale"] = scale
        out[t["name"]] = a
    return out


if __name__ == "__main__":
    import sys
    for name, a in read_ditkit(sys.argv[1], dequantize="--dequantize" in sys.argv).items():
        print(name, a.dtype, list(a.shape))

"""Read a DiTKit bundle with numpy only (json + numpy.memmap), from FORMAT.md alone.

    from read_ditkit import read_ditkit
    tensors = read_ditkit("model.ditkit", dequantize=True)   # {name: numpy array}
"""
import json
import os

import numpy as np

NUMPY = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I8": "i1", "F64": "<f8", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "?"}


def read_ditkit(path, dequantize=False):
    """Returns {name: array}; zero-copy memmap views unless a conversion is needed.

    BF16 tensors are widened to float32 (exact). With dequantize=True, I8 tensors become
    float32 values q * scale[row]; otherwise they stay int8 and their scales come as NAME.scale."""
    manifest = json.load(open(os.path.join(path, "manifest.json")))
    if manifest.get("format") != "ditkit" or manifest.get("format_version") != 1:
        raise ValueError("%s: not a DiTKit bundle of format version 1" % path)
    blob = np.memmap(os.path.join(path, manifest["weights"]["file"]), dtype=np.uint8, mode="r")
    if blob.size != manifest["weights"]["bytes"]:
        raise ValueError("%s: weights.bin has %d bytes, the manifest says %d" % (path, blob.size, manifest["weights"]["bytes"]))

    def view(record):
        raw = blob[record["offset"]:record["offset"] + record["bytes"]]
        return raw.view(NUMPY[record["dtype"]]).reshape(record["shape"])

    out = {}
    for t in manifest["tensors"]:
        a = view(t)
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
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

"""Reads DiTKit exports with their real Python clients and prints JSON for the Swift tests.

    read_exports.py gguf FILE [REF]  -> tensors {name: {type, shape (numpy order), sha256 of bytes and of gguf-py's float32 values}}, metadata;
                                        with REF (a bundle, or a float32 safetensors export in the GGUF's layout, whose
                                        `model.diffusion_model.` prefix is ignored): Q8_0 bytes checked against gguf-py's
                                        quantize of REF's values, and every tensor's values against REF's
    read_exports.py hdf5 FILE        -> datasets {name: {dtype, shape, sha256}}, root attributes
    read_exports.py ditkit BUNDLE [--dequantize] [--verify]   -> examples/read_ditkit.py output
"""
import hashlib
import json
import os
import sys

import numpy as np


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def main():
    kind, path = sys.argv[1], sys.argv[2]
    out = {}
    if kind == "gguf":
        import gguf
        from gguf import quants
        r = gguf.GGUFReader(path)
        meta = {}
        for name, field in r.fields.items():
            if name.startswith("GGUF."):
                continue
            v = field.contents() if hasattr(field, "contents") else None
            meta[name] = v if isinstance(v, (str, int, float, bool, list)) else str(v)
        tensors = {}
        for t in r.tensors:
            entry = {"type": t.tensor_type.name, "shape": [int(x) for x in reversed(t.shape)], "bytes_sha256": digest(t.data.view(np.uint8))}
            values = np.asarray(t.data) if t.tensor_type.name in ("F32", "F64", "I8", "I16", "I32", "I64") else quants.dequantize(t.data, t.tensor_type)
            entry["values_sha256"] = digest(values.astype(np.float32).reshape(entry["shape"]))
            tensors[t.name] = entry
        out = {"tensors": tensors, "metadata": meta, "alignment": int(r.alignment)}
        # Q8_0 must match gguf-py's bit-exact port of ggml's reference quantizer.
        if len(sys.argv) > 3:
            ref = sys.argv[3]
            if ref.endswith(".safetensors"):
                from safetensors.numpy import load_file
                prefix = "model.diffusion_model."
                source = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in load_file(ref).items()}
            else:
                sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "examples"))
                from read_ditkit import read_ditkit
                source = read_ditkit(ref, dequantize=True)
            checked = 0
            missing, extra, value_mismatch = [], sorted(set(source) - {t.name for t in r.tensors}), []
            for t in r.tensors:
                if t.name not in source:
                    missing.append(t.name)
                    continue
                want = source[t.name].astype(np.float32)
                values = np.asarray(t.data) if t.tensor_type.name == "F32" else quants.dequantize(t.data, t.tensor_type)
                same = values.size == want.size and np.array_equal(values.astype(np.float32).reshape(want.shape), want, equal_nan=True)
                if t.tensor_type.name == "Q8_0" and not same:
                    # Quantized by the export: ggml's bytes for REF's values.
                    q = quants.quantize(np.ascontiguousarray(want), gguf.GGMLQuantizationType.Q8_0)
                    if not np.array_equal(q.view(np.uint8).ravel(), t.data.view(np.uint8).ravel()):
                        out["q8_0_mismatch"] = t.name
                    checked += 1
                elif not same:
                    value_mismatch.append(t.name)
            out["q8_0_checked"] = checked
            out["reference"] = {"not_in_reference": missing, "not_in_gguf": extra, "value_mismatch": value_mismatch}
    elif kind == "hdf5":
        import h5py
        f = h5py.File(path, "r")
        datasets = {}
        f.visititems(lambda name, obj: datasets.__setitem__(name, {"dtype": str(obj.dtype), "shape": list(obj.shape), "sha256": digest(obj[()]),
                                                                  "stored_dtype": text(obj.attrs.get("stored_dtype", "")),
                                                                  "xxh3_128": text(obj.attrs.get("xxh3_128", ""))}) if isinstance(obj, h5py.Dataset) else None)
        out = {"datasets": datasets, "attrs": {k: (v if isinstance(v, str) else v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()},
               # what h5py hands a reader: `str` for text attributes, not `bytes`
               "attr_types": {k: type(v).__name__ for k, v in f.attrs.items()},
               "dataset_attr_types": sorted({type(v).__name__ for name in datasets for v in f[name].attrs.values()})}
    elif kind == "ditkit":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "examples"))
        from read_ditkit import read_ditkit
        tensors = read_ditkit(path, dequantize="--dequantize" in sys.argv, verify="--verify" in sys.argv)
        out = {"tensors": {k: {"dtype": str(v.dtype), "shape": list(v.shape), "sha256": digest(v)} for k, v in tensors.items()}}
    json.dump(out, sys.stdout, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main()

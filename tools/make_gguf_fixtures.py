#!/usr/bin/env python3
"""Writes small GGUF files with gguf-py's GGUFWriter (the real producer) for DiTKit's GGUF reader tests.

    python tools/make_gguf_fixtures.py [--ggml PATH/libggml-base.so]

Needs numpy, gguf, and llama-cpp-python (for the K-quant tensors: gguf-py has no K-quant
quantizer, so their blocks come from ggml's own `ggml_quantize_chunk`, see make_quant_vectors.py).
Outputs, in Tests/Fixtures/gguf/:
  types.gguf              one tensor of every type DiTKit reads (F32, F16, BF16, F64, I8-I64 and the
                          ten block types), 1-D to 4-D, and metadata of every GGUF value type
  aligned64.gguf          two tensors with general.alignment = 64
  NAME.expected.json      what gguf-py's GGUFReader reads back: per tensor the type, the shape in
                          numpy order, the SHA-256 of the raw bytes and of the float32 values of
                          gguf-py's `dequantize`; per key the value
Everything is seeded, so reruns give the same files.
"""
import hashlib
import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, quants

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "gguf")


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def expected(path):
    """The listing gguf-py reads back from `path`."""
    r = gguf.GGUFReader(path)
    tensors = []
    for t in r.tensors:
        shape = [int(x) for x in reversed(t.shape)]
        raw = np.asarray(t.data).view(np.uint8)
        entry = {"name": t.name, "type": t.tensor_type.name, "shape": shape, "bytes_sha256": sha(raw)}
        if t.tensor_type.name not in ("I8", "I16", "I32", "I64"):
            values = quants.dequantize(np.asarray(t.data), t.tensor_type) if t.tensor_type.name not in ("F64",) else np.asarray(t.data)
            entry["values_sha256"] = sha(np.asarray(values).astype(np.float32).reshape(shape))
        tensors.append(entry)
    meta = {}
    for name, field in r.fields.items():
        if name.startswith("GGUF."):
            continue
        v = field.contents()
        meta[name] = v
    return {"alignment": int(r.alignment), "tensors": tensors, "metadata": meta}


def main():
    from make_quant_vectors import load_ggml, quantize as ggml_quantize, TYPES
    lib, version = load_ggml(sys.argv[2] if len(sys.argv) > 2 and sys.argv[1] == "--ggml" else None)
    os.makedirs(ROOT, exist_ok=True)
    rng = np.random.default_rng(1414)

    path = os.path.join(ROOT, "types.gguf")
    w = gguf.GGUFWriter(path, "flux")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.125)
    w.add_uint64("test.u64", 2 ** 63 + 5)
    w.add_int64("test.i64", -(2 ** 62))
    w.add_float64("test.f64", -2.5)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo GGUF")
    w.add_array("test.ints", [1, 2, 3])
    w.add_array("test.strings", ["a", "bc", ""])
    w.add_array("test.long", list(range(40)))
    w.add_quantization_version(2)

    def normal(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    w.add_tensor("f32.vector", normal(7))
    w.add_tensor("f32.matrix", normal(3, 5))
    w.add_tensor("f16.matrix", normal(2, 64).astype(np.float16))
    w.add_tensor("bf16.matrix", quants.quantize(normal(4, 32), T.BF16), raw_dtype=T.BF16)
    w.add_tensor("f64.vector", rng.standard_normal(5))
    w.add_tensor("i8.matrix", rng.integers(-128, 128, (2, 6)).astype(np.int8))
    w.add_tensor("i16.vector", rng.integers(-30000, 30000, 4).astype(np.int16))
    w.add_tensor("i32.vector", rng.integers(-2 ** 31, 2 ** 31, 4).astype(np.int32))
    w.add_tensor("i64.vector", rng.integers(-2 ** 62, 2 ** 62, 3).astype(np.int64))
    for name in ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]:
        w.add_tensor(name.lower() + ".conv", quants.quantize(normal(2, 3, 2, 64), T[name]), raw_dtype=T[name])
    for name in ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]:
        x = normal(3, 256)
        blocks = ggml_quantize(lib, TYPES[name], x).reshape(3, -1)
        w.add_tensor(name.lower() + ".weight", blocks, raw_dtype=T[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    path2 = os.path.join(ROOT, "aligned64.gguf")
    w = gguf.GGUFWriter(path2, "sd3")
    w.add_custom_alignment(64)
    w.add_tensor("a", normal(3))
    w.add_tensor("b", quants.quantize(normal(1, 32), T.Q8_0), raw_dtype=T.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    for p in [path, path2]:
        with open(p + ".expected.json", "w") as f:
            json.dump(dict(expected(p), producer="gguf-py GGUFWriter; K-quant blocks by " + version),
                      f, indent=1, default=str)
            f.write("\n")
    print("wrote", ROOT)


if __name__ == "__main__":
    main()

"""Writes a GGUF the way the FLUX and SD3 files people download are made: ComfyUI-GGUF's tools/convert.py
(gguf-py's GGUFWriter, `general.architecture`, names as in the checkpoint without `model.diffusion_model.`,
float16 kept as is) followed by its patched llama-quantize (tools/lcpp.patch: 2-D tensors quantized except
the per-architecture list; rows that do not divide fall back to F16). The quantization is gguf-py's
bit-exact port of ggml's reference quantizers, so the 32-value types only (K-quants need llama.cpp).

    write_comfy_gguf.py SRC.safetensors OUT.gguf ARCH QTYPE     (ARCH flux or sd3; QTYPE Q8_0, Q4_0, Q4_1, Q5_0, Q5_1)
"""
import sys

import gguf
import numpy as np
from safetensors.numpy import load_file

# lcpp.patch: tensors an image model keeps in its base type (name substrings; SD3's exact names).
KEEP = {
    "flux": ["txt_in.", "img_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer."],
    "sd3": ["final_layer.", "time_text_embed.", "context_embedder.", "t_embedder.", "y_embedder.", "x_embedder."],
}
KEEP_EXACT = {"sd3": ["proj_out.weight", "pos_embed"]}


def main():
    src, out, arch, qname = sys.argv[1:5]
    qtype = gguf.GGMLQuantizationType[qname]
    tensors = load_file(src)
    prefix = "model.diffusion_model."
    w = gguf.GGUFWriter(out, arch=arch)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, data in tensors.items():
        name = key[len(prefix):] if key.startswith(prefix) else key
        # convert.py: float16 sources stay F16 (its F32 rule applies to float32/bfloat16 sources).
        qt = gguf.GGMLQuantizationType.F16 if data.dtype == np.float16 else gguf.GGMLQuantizationType.F32
        keep = any(k in name for k in KEEP[arch]) or name in KEEP_EXACT.get(arch, [])
        if data.ndim == 2 and data.size > 1024 and not keep and data.shape[-1] % gguf.GGML_QUANT_SIZES[qtype][0] == 0:
            qt = qtype
        q = gguf.quants.quantize(np.ascontiguousarray(data.astype(np.float32)), qt) if qt not in (gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.F32) else data
        w.add_tensor(name, q, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()

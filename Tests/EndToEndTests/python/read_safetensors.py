"""Reads a safetensors file with the real client (safetensors.numpy) and prints, as JSON,
every tensor's dtype, shape and the SHA-256 of its bytes, plus the metadata."""
import hashlib
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

path = sys.argv[1]
tensors = load_file(path)
with safe_open(path, "np") as f:
    metadata = f.metadata() or {}
out = {
    "tensors": {
        name: {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()}
        for name, a in tensors.items()
    },
    "metadata": metadata,
}
json.dump(out, sys.stdout, indent=1, sort_keys=True)

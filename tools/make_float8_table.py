#!/usr/bin/env python3
"""Writes Tests/Fixtures/float8/float8_to_float32.json: torch's widening of every float8 code to
float32, as bit patterns, for DiTKit's ElementConversion to match bit for bit.

    python tools/make_float8_table.py

For each of torch.float8_e4m3fn (safetensors F8_E4M3) and torch.float8_e5m2 (F8_E5M2): the 256
codes 0x00..0xFF viewed as float8 and converted with .float(), written as the float32 bit patterns
(hex strings) in code order.
"""
import json
import os

import torch

out = {"torch": torch.__version__}
codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
for name, dtype in (("F8_E4M3", torch.float8_e4m3fn), ("F8_E5M2", torch.float8_e5m2)):
    widened = codes.view(dtype).float()
    out[name] = ["%08x" % (int(b) & 0xFFFFFFFF) for b in widened.view(torch.int32).tolist()]
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "float8", "float8_to_float32.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(out, f, indent=0)
    f.write("\n")
print("wrote", path)

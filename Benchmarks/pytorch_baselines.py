#!/usr/bin/env python3
"""PyTorch baselines for `make bench`, timed the same way as DiTKit (median of runs, JSON lines).

    python Benchmarks/pytorch_baselines.py dit-forward DiT-XL-2-256x256.pt
    python Benchmarks/pytorch_baselines.py vae-decode sd-vae-ft-ema 256
    python Benchmarks/pytorch_baselines.py convert DiT-XL-2-256x256.pt OUT.safetensors f32|f16
    python Benchmarks/pytorch_baselines.py get-tensor FILE.safetensors NAME
"""
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
RUNS = int(os.environ.get("RUNS", "3"))
torch.set_num_threads(int(os.environ.get("THREADS", str(os.cpu_count()))))


def report(name, times, **extra):
    print(json.dumps({"measure": name, "median_s": statistics.median(times), "runs": times, **extra}))


def timed(fn, runs=RUNS, warmup=True):
    if warmup:
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main():
    kind = sys.argv[1]
    if kind == "dit-forward":
        from dit_reference import DiT
        model = DiT(input_size=32, patch_size=2, hidden_size=1152, depth=28, num_heads=16)
        model.load_state_dict(torch.load(sys.argv[2], map_location="cpu", weights_only=True))
        model.eval()
        x = torch.randn(1, 4, 32, 32)
        with torch.inference_mode():
            report("torch-dit-forward", timed(lambda: model(x, torch.tensor([500.0]), torch.tensor([207]))), threads=torch.get_num_threads())
    elif kind == "vae-decode":
        from diffusers import AutoencoderKL
        vae = AutoencoderKL.from_pretrained(sys.argv[2]).eval()
        s = int(sys.argv[3]) // 8
        z = torch.randn(1, 4, s, s)
        with torch.inference_mode():
            report("torch-vae-decode", timed(lambda: vae.decode(z)), threads=torch.get_num_threads())
    elif kind == "convert":
        from safetensors.torch import save_file
        src, out, dtype = sys.argv[2], sys.argv[3], sys.argv[4]

        def run():
            sd = torch.load(src, map_location="cpu", weights_only=True)
            if dtype == "f16":
                sd = {k: v.half() for k, v in sd.items()}
            save_file(sd, out)
        report("torch-convert-" + dtype, timed(run, warmup=False))
    elif kind == "get-tensor":
        from safetensors import safe_open

        def run():
            with safe_open(sys.argv[2], "pt") as f:
                t = f.get_tensor(sys.argv[3])
                float(t.sum())
        report("safetensors-get-tensor", timed(run, runs=max(RUNS, 5)))
    else:
        sys.exit("unknown measurement " + kind)


if __name__ == "__main__":
    main()

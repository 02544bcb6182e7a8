#!/usr/bin/env python3
"""PyTorch baselines for `make bench`, timed the same way as DiTKit (median of runs, JSON lines).

    python Benchmarks/pytorch_baselines.py dit-forward DiT-XL-2-256x256.pt [BATCH]
    python Benchmarks/pytorch_baselines.py vae-decode sd-vae-ft-ema 256
    python Benchmarks/pytorch_baselines.py convert DiT-XL-2-256x256.pt OUT.safetensors f32|f16
    python Benchmarks/pytorch_baselines.py get-tensor FILE.safetensors NAME
    python Benchmarks/pytorch_baselines.py flux-blocks FLUX_FOLDER SIZE TOKENS
    python Benchmarks/pytorch_baselines.py load-safetensors FILE [f16] [--floor-gb N]

Times are wall-clock medians; each line also has "cpu_s", the median process CPU time (every
thread) of the same runs, which stays meaningful when other work shares the machine.
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


def report(name, times, cpu=None, **extra):
    """One JSON line; `cpu` (the CPU times of the same runs, as `timed` records them in CPU) adds cpu_s."""
    more = {"cpu_s": statistics.median(cpu)} if cpu else {}
    print(json.dumps({"measure": name, "median_s": statistics.median(times), "runs": times, **more, **extra}), flush=True)


CPU = []


def timed(fn, runs=RUNS, warmup=True):
    if warmup:
        fn()
    out = []
    CPU.clear()
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        out.append(time.perf_counter() - t)
        CPU.append(time.process_time() - c)
    return out


def main():
    kind = sys.argv[1]
    if kind == "dit-forward":
        from dit_reference import DiT
        model = DiT(input_size=32, patch_size=2, hidden_size=1152, depth=28, num_heads=16)
        model.load_state_dict(torch.load(sys.argv[2], map_location="cpu", weights_only=True))
        model.eval()
        batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
        x = torch.randn(batch, 4, 32, 32)
        t, y = torch.full((batch,), 500.0), torch.tensor([207, 360, 387, 974] * batch)[:batch]
        with torch.inference_mode():
            report("torch-dit-forward", timed(lambda: model(x, t, y)), CPU, threads=torch.get_num_threads(), batch=batch)
    elif kind == "vae-decode":
        from diffusers import AutoencoderKL
        vae = AutoencoderKL.from_pretrained(sys.argv[2]).eval()
        s = int(sys.argv[3]) // 8
        z = torch.randn(1, 4, s, s)
        with torch.inference_mode():
            report("torch-vae-decode", timed(lambda: vae.decode(z)), CPU, threads=torch.get_num_threads())
    elif kind == "convert":
        from safetensors.torch import save_file
        src, out, dtype = sys.argv[2], sys.argv[3], sys.argv[4]

        def run():
            sd = torch.load(src, map_location="cpu", weights_only=True)
            if dtype == "f16":
                sd = {k: v.half() for k, v in sd.items()}
            save_file(sd, out)
        report("torch-convert-" + dtype, timed(run, warmup=False), CPU)
    elif kind == "get-tensor":
        from safetensors import safe_open

        def run():
            with safe_open(sys.argv[2], "pt") as f:
                t = f.get_tensor(sys.argv[3])
                float(t.sum())
        report("safetensors-get-tensor", timed(run, runs=max(RUNS, 5)), CPU)
    elif kind == "flux-blocks":
        flux_blocks(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif kind == "load-safetensors":
        load_safetensors(sys.argv[2], "f16" in sys.argv[3:], float(sys.argv[sys.argv.index("--floor-gb") + 1]) if "--floor-gb" in sys.argv else 2.0)
    else:
        sys.exit("unknown measurement " + kind)


def flux_blocks(folder, size, tokens):
    """diffusers' FluxTransformer2DModel forward (batch 1), timing each double-stream and single-stream
    block with forward hooks, after one warm-up forward."""
    from diffusers import FluxTransformer2DModel
    model = FluxTransformer2DModel.from_pretrained(folder, torch_dtype=torch.float32).eval()
    c = model.config
    g = torch.Generator().manual_seed(0)
    side = size // 16
    x = torch.randn(1, side * side, c.in_channels, generator=g)
    text = torch.randn(1, tokens, c.joint_attention_dim, generator=g)
    pooled = torch.randn(1, c.pooled_projection_dim, generator=g)
    img_ids = torch.zeros(side, side, 3)
    img_ids[..., 1] = torch.arange(side)[:, None]
    img_ids[..., 2] = torch.arange(side)[None, :]
    img_ids = img_ids.reshape(-1, 3)
    txt_ids = torch.zeros(tokens, 3)
    marks = {}

    def pre(name):
        return lambda m, a, k=None: marks.__setitem__(name, time.perf_counter())

    def post(name, into):
        return lambda m, a, *r: into.append(time.perf_counter() - marks[name])
    double, single = [], []
    for i, b in enumerate(model.transformer_blocks):
        b.register_forward_pre_hook(pre("d%d" % i))
        b.register_forward_hook(post("d%d" % i, double))
    for i, b in enumerate(model.single_transformer_blocks):
        b.register_forward_pre_hook(pre("s%d" % i))
        b.register_forward_hook(post("s%d" % i, single))
    guidance = torch.full((1,), 3.5) if c.guidance_embeds else None
    with torch.inference_mode():
        run = lambda: model(hidden_states=x, encoder_hidden_states=text, pooled_projections=pooled, timestep=torch.full((1,), 0.5),
                            img_ids=img_ids, txt_ids=txt_ids, guidance=guidance)
        total = timed(run)
    per = lambda xs, n: [sum(xs[k * n:(k + 1) * n]) / n for k in range(len(xs) // n)][1:]   # drop the warm-up
    extra = dict(image_tokens=side * side, text_tokens=tokens, threads=torch.get_num_threads())
    report("torch-flux-double-block", per(double, len(model.transformer_blocks)), **extra)
    report("torch-flux-single-block", per(single, len(model.single_transformer_blocks)), **extra)
    report("torch-flux-forward", total, CPU)


def load_safetensors(path, half, floor_gb):
    """What PyTorch does with a whole-model file: safetensors.torch.load_file (the tensors in
    memory, as every loader that then converts or saves needs them), then .half() when asked.
    Peak resident memory is sampled; the load is abandoned (exit 3) before the machine runs out of
    memory (MemAvailable under floor_gb), reporting how far it got."""
    import threading
    from safetensors.torch import load_file
    state = {"peak": 0, "stop": False}

    def rss():
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS")).split()[1]) * 1024

    def available():
        with open("/proc/meminfo") as f:
            return int(next(l for l in f if l.startswith("MemAvailable")).split()[1]) * 1024

    start = time.perf_counter()

    def watch():
        while not state["stop"]:
            state["peak"] = max(state["peak"], rss())
            if available() < floor_gb * 1e9:
                print(json.dumps({"measure": "torch-load-safetensors", "outcome": "abandoned: MemAvailable below %.1f GB" % floor_gb,
                                  "seconds": time.perf_counter() - start, "peak_rss_bytes": state["peak"],
                                  "file_bytes": os.path.getsize(path)}), flush=True)
                os._exit(3)
            time.sleep(0.05)
    threading.Thread(target=watch, daemon=True).start()
    sd = load_file(path)
    loaded = time.perf_counter() - start
    if half:
        sd = {k: v.half() for k, v in sd.items()}
    state["stop"] = True
    state["peak"] = max(state["peak"], rss())
    print(json.dumps({"measure": "torch-load-safetensors", "outcome": "loaded" + (" and converted to f16" if half else ""),
                      "seconds": time.perf_counter() - start, "load_seconds": loaded, "peak_rss_bytes": state["peak"],
                      "file_bytes": os.path.getsize(path), "tensors": len(sd)}), flush=True)


if __name__ == "__main__":
    main()

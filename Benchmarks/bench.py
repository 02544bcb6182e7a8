#!/usr/bin/env python3
"""`make bench`: DiTKit against the copy limit, sha256sum and PyTorch, measured in the same run.

Every figure is the median of RUNS runs (default 3) and is printed as a ratio against a baseline
measured here, now, on this machine. Peak resident memory comes from /usr/bin/time -v.
Usage: python Benchmarks/bench.py DATA_DIR DITKIT DITKIT_BENCH
"""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

DATA, DITKIT, BENCH = sys.argv[1], sys.argv[2], sys.argv[3]
RUNS = int(os.environ.get("RUNS", "3"))
THREADS = os.cpu_count()
HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
DIT = os.path.join(DATA, "DiT-XL-2-256x256.pt")
VAE_DIR = os.path.join(DATA, "sd-vae-ft-ema")
VAE = os.path.join(VAE_DIR, "diffusion_pytorch_model.safetensors")
OUT = os.path.join(DATA, "out")
os.makedirs(OUT, exist_ok=True)
rows = []


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), r.stderr[-2000:]))
    return r


def timed(cmd, runs=RUNS, before=None):
    """Median wall time and peak RSS (KB) of a command."""
    times, rss = [], []
    for _ in range(runs):
        if before:
            before()
        t = time.perf_counter()
        r = run(["/usr/bin/time", "-v"] + cmd)
        times.append(time.perf_counter() - t)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        rss.append(int(m.group(1)) if m else 0)
    return statistics.median(times), max(rss)


def json_lines(cmd, env=None):
    out = run(cmd, env=env).stdout
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def row(task, ditkit_s, baseline_name, baseline_s, target=None, rss=None):
    ratio = ditkit_s / baseline_s if baseline_s else float("nan")
    rows.append((task, ditkit_s, baseline_name, baseline_s, ratio, target, rss))
    print("%-44s %8.3f s  vs %-36s %8.3f s  ratio %5.2f%s%s" % (
        task, ditkit_s, baseline_name, baseline_s, ratio, "" if rss is None else "  peak RSS %d MB" % (rss // 1024),
        "" if target is None else "  target %s" % target), flush=True)


env = dict(os.environ, THREADS=str(THREADS), RUNS=str(RUNS))
print("machine: %s, %d cores, %s; runs per figure: %d" % (platform.processor() or platform.machine(), THREADS, platform.platform(), RUNS))

# 1. inspect
sha, _ = timed(["sha256sum", DIT])
t, _ = timed([DITKIT, "inspect", DIT])
row("inspect DiT-XL/2 .pt (no hash)", t, "sha256sum of the file", sha, "<= 0.5 s")
t, _ = timed([DITKIT, "inspect", "--hash", DIT])
row("inspect --hash DiT-XL/2 .pt", t, "sha256sum of the file", sha)

# 2-3. convert, against cp and torch.load + safetensors.save_file
def drop(p):
    return lambda: shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (os.path.exists(p) and os.remove(p))

cp_t, _ = timed(["cp", DIT, os.path.join(OUT, "copy.pt")], before=drop(os.path.join(OUT, "copy.pt")))
os.remove(os.path.join(OUT, "copy.pt"))
torch_t = {}
for d in ("f32", "f16"):
    st = os.path.join(OUT, "torch-%s.safetensors" % d)
    r = json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "convert", DIT, st, d], env=env)
    torch_t[d] = r[0]["median_s"]
cps_t, _ = timed(["sh", "-c", "cp \"$0\" \"$1\" && sync", DIT, os.path.join(OUT, "copy.pt")], before=drop(os.path.join(OUT, "copy.pt")))
os.remove(os.path.join(OUT, "copy.pt"))
for d in ("f32", "f16", "int8"):
    b = os.path.join(OUT, "xl-%s.ditkit" % d)
    t, rss = timed([DITKIT, "convert", DIT, "-o", b, "--dtype", d], before=drop(b))
    row("convert --dtype %s" % d, t, "cp + sync of the source (durable copy)", cps_t, "", None)
    row("convert --dtype %s" % d, t, "cp of the source", cp_t, "<= 2.0", rss)
    row("convert --dtype %s" % d, t, "torch.load+save_file (%s)" % ("f16" if d == "f16" else "f32"), torch_t.get(d, torch_t["f32"]), "<= 0.33")

# 4. open a bundle and read one tensor, against safetensors safe_open + get_tensor
name = "blocks.13.mlp.fc1.weight"
o = json_lines([BENCH, "open", os.path.join(OUT, "xl-f32.ditkit"), name], env=env)[0]
s = json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "get-tensor", os.path.join(OUT, "torch-f32.safetensors"), name], env=env)[0]
row("open bundle + read one tensor (18 MB)", o["median_s"], "safe_open + get_tensor", s["median_s"], "<= 20 ms")

# 5. forward passes against PyTorch CPU with the same thread count
f = json_lines([BENCH, "dit-forward", os.path.join(OUT, "xl-f32.ditkit"), "1"], env=env)[0]
p = json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "dit-forward", DIT], env=env)[0]
row("DiT-XL/2 forward, batch 1, 256 px", f["median_s"], "PyTorch CPU forward", p["median_s"], "<= 1.5")
vb = os.path.join(OUT, "vae-f32.ditkit")
run([DITKIT, "convert", VAE, "-o", vb, "--force"])
f = json_lines([BENCH, "vae-decode", vb, "256"], env=env)[0]
p = json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "vae-decode", VAE_DIR, "256"], env=env)[0]
row("SD-VAE decode, batch 1, 256 px", f["median_s"], "PyTorch CPU decode", p["median_s"], "<= 1.5")

# 6. verify --against of the f16 bundle, end to end (one run: it is long)
t, rss = timed([DITKIT, "verify", os.path.join(OUT, "xl-f16.ditkit"), "--against", DIT], runs=1)
dit_torch = json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "dit-forward", DIT], env=env)[0]["median_s"]
row("verify f16 --against .pt (2 forwards, batch 4)", t, "8 PyTorch batch-1 forwards", 8 * dit_torch, None, rss)

# Packs: compression ratio and speed per dtype (zstd level 3, all cores, long-distance matching).
packs = []
for d in ("f32", "f16", "int8"):
    b = os.path.join(OUT, "xl-%s.ditkit" % d)
    z = os.path.join(OUT, "xl-%s.ditkit.zst" % d)
    t, _ = timed([DITKIT, "pack", b, "-o", z], runs=1, before=drop(z))
    u, _ = timed([DITKIT, "unpack", z, "-o", os.path.join(OUT, "unpacked")], runs=1, before=drop(os.path.join(OUT, "unpacked")))
    size_in = os.path.getsize(os.path.join(b, "weights.bin"))
    size_out = os.path.getsize(z)
    packs.append((d, size_in, size_out, t, u))
    print("pack %-4s %8.1f MB -> %8.1f MB  ratio %.3f  pack %.1f MB/s  unpack+verify %.1f MB/s" % (
        d, size_in / 1e6, size_out / 1e6, size_in / size_out, size_in / t / 1e6, size_in / u / 1e6), flush=True)

# Block types: quantize and dequantize speed per type (MB/s of float32 data), one thread and all cores.
quant_rows = json_lines([BENCH, "quants", "16"], env=env)

# Scale: several conversions with bounded parallelism.
jobs_in = [DIT, VAE]
both_t, _ = timed(["sh", "-c", "cp \"$0\" \"$2/a\" && cp \"$1\" \"$2/b\"", DIT, VAE, OUT], runs=1)
for f in ("a", "b"):
    os.remove(os.path.join(OUT, f))
for jobs in (1, 2):
    many = os.path.join(OUT, "many")
    t, rss = timed([DITKIT, "convert", *jobs_in, "-o", many, "--dtype", "f16", "--jobs", str(jobs)], runs=1, before=drop(many))
    row("convert DiT-XL/2 + SD-VAE f16 --jobs %d" % jobs, t, "cp of both sources", both_t, None, rss)

print("\npack rows:")
print("| bundle | weights | pack | ratio | pack speed | unpack + verify speed |")
print("|---|---|---|---|---|---|")
for d, a, b, t, u in packs:
    print("| DiT-XL/2 %s | %.1f MB | %.1f MB | %.3f | %.0f MB/s | %.0f MB/s |" % (d, a / 1e6, b / 1e6, a / b, a / t / 1e6, a / u / 1e6))
print("\nblock type rows (MB/s of float32 values):")
print("| type | quantize, 1 thread | quantize, all cores | dequantize, 1 thread | dequantize, all cores |")
print("|---|---|---|---|---|")
for q in quant_rows:
    k = sorted(key for key in q if key.startswith("quantize_mb_s_"))
    many = [key for key in k if not key.endswith("_1t")]
    many = many[0][len("quantize_mb_s_"):] if many else "1t"
    print("| %s | %.0f | %.0f | %.0f | %.0f |" % (q["type"], q["quantize_mb_s_1t"], q["quantize_mb_s_" + many],
                                               q["dequantize_mb_s_1t"], q["dequantize_mb_s_" + many]))
print("\nBENCHMARKS.md rows:")
print("| task | DiTKit | baseline | baseline time | ratio | target | peak RSS |")
print("|---|---|---|---|---|---|---|")
for task, d, bn, bt, ratio, target, rss in rows:
    print("| %s | %.3f s | %s | %.3f s | %.2f | %s | %s |" % (task, d, bn, bt, ratio, target or "", "" if rss is None else "%d MB" % (rss // 1024)))

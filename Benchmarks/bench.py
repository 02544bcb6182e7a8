#!/usr/bin/env python3
"""`make bench`: DiTKit against the copy limit, sha256sum and PyTorch, measured in the same run.

Every figure is the median of RUNS runs (default 3) and is printed as a ratio against a baseline
measured here, now, on this machine. Each command's wall time and process CPU time (user + system,
every thread, from /usr/bin/time -v) are both kept: on a machine other work shares, the wall ratio
moves with the load and the CPU ratio much less. Peak resident memory comes from /usr/bin/time -v.
The load average is printed before and after every measurement.
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
FLUX_BLOCKS = os.path.join(DATA, "flux-blocks")
OUT = os.path.join(DATA, "out")
os.makedirs(OUT, exist_ok=True)
rows = []
loads = []


def load():
    return os.getloadavg()[0]


def run(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), r.stderr[-2000:]))
    return r


class M:
    """A measurement: median wall and CPU seconds of its runs, peak RSS (KB)."""
    def __init__(self, wall, cpu=None, rss=None):
        self.wall, self.cpu, self.rss = wall, cpu, rss


def timed(cmd, runs=RUNS, before=None):
    """Median wall time, median CPU time (user + sys) and peak RSS (KB) of a command."""
    times, cpus, rss = [], [], []
    loads.append(load())
    for _ in range(runs):
        if before:
            before()
        t = time.perf_counter()
        r = run(["/usr/bin/time", "-v"] + cmd)
        times.append(time.perf_counter() - t)
        user = float(re.search(r"User time \(seconds\): ([\d.]+)", r.stderr).group(1))
        system = float(re.search(r"System time \(seconds\): ([\d.]+)", r.stderr).group(1))
        cpus.append(user + system)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", r.stderr)
        rss.append(int(m.group(1)) if m else 0)
    loads.append(load())
    return M(statistics.median(times), statistics.median(cpus), max(rss))


def merged(ms):
    """One measurement from single runs: median wall and CPU (None unless every run has one), the
    largest peak RSS (None when the runs timed themselves and measured none)."""
    cpu = statistics.median(m.cpu for m in ms) if all(m.cpu for m in ms) else None
    rss = [m.rss for m in ms if m.rss is not None]
    return M(statistics.median(m.wall for m in ms), cpu, max(rss) if rss else None)


def paired_ratios(ours, theirs, factor=1.0):
    """Medians of the round-by-round wall and CPU ratios of two lists of single runs (each of
    `theirs` counted `factor` times); the CPU ratio is None when a run has no CPU time."""
    walls = [a.wall / (factor * b.wall) for a, b in zip(ours, theirs)]
    print("  rounds' wall ratios: %s" % " ".join("%.2f" % w for w in walls), flush=True)
    cpu_known = all(a.cpu and b.cpu for a, b in zip(ours, theirs))
    return statistics.median(walls), statistics.median(a.cpu / (factor * b.cpu) for a, b in zip(ours, theirs)) if cpu_known else None


def json_lines(cmd, env=None):
    loads.append(load())
    out = run(cmd, env=env).stdout
    loads.append(load())
    return [json.loads(l) for l in out.splitlines() if l.startswith("{")]


def inner(j):
    """A measurement printed by ditkit-bench or pytorch_baselines.py (in-process timing)."""
    return M(j["median_s"], j.get("cpu_s"))


def verdict(d, ratio, target):
    """`target` is a ratio ("<= 1.5") or an absolute time of DiTKit's ("<= 0.5 s", "<= 20 ms")."""
    if not target or not target.startswith("<="):
        return ""
    parts = target.split()
    limit = float(parts[1])
    if len(parts) > 2:
        limit *= {"s": 1.0, "ms": 1e-3}[parts[2]]
        return "**met**" if d.wall <= limit else "**missed**"
    return "**met**" if ratio <= limit else "**missed**"


def row(task, d, baseline_name, b, target=None, rss_target_mb=None, paired=None):
    """`paired`: (wall ratio, CPU ratio) measured round by round (medians of the rounds' ratios),
    used instead of the ratio of the medians."""
    ratio = d.wall / b.wall if b.wall else float("nan")
    cpu_ratio = d.cpu / b.cpu if d.cpu and b.cpu else None
    if paired:
        ratio, cpu_ratio = paired
    v = verdict(d, ratio, target)
    if rss_target_mb is not None and d.rss is not None:
        ok = d.rss // 1024 <= rss_target_mb
        v += ("; " if v else "") + "RSS ≤ %d MB: %s" % (rss_target_mb, "**met**" if ok else "**missed**")
    rows.append((task, d, baseline_name, b, ratio, cpu_ratio, target, v))
    print("%-46s %8.3f s (cpu %6s) vs %-40s %8.3f s (cpu %6s)  ratio %5.2f (cpu %5s)%s%s  %s" % (
        task, d.wall, "%.2f" % d.cpu if d.cpu else "-", baseline_name, b.wall, "%.2f" % b.cpu if b.cpu else "-", ratio,
        "%.2f" % cpu_ratio if cpu_ratio else "-", "" if d.rss is None else "  peak RSS %d MB" % (d.rss // 1024),
        "" if target is None else "  target %s" % target, v), flush=True)


def drop(p):
    return lambda: shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else (os.path.exists(p) and os.remove(p))


env = dict(os.environ, THREADS=str(THREADS), RUNS=str(RUNS))
print("machine: %s, %d cores, %s; runs per figure: %d; load average at start %.2f %.2f %.2f" % (
    platform.processor() or platform.machine(), THREADS, platform.platform(), RUNS, *os.getloadavg()), flush=True)
if os.environ.get("BENCH_FREE_PAGES"):
    print("free pages: " + os.environ["BENCH_FREE_PAGES"], flush=True)
if os.environ.get("BENCH_ONLY", "") not in ("", "convert"):
    sys.exit("BENCH_ONLY: only 'convert' is known (the inspections and the conversions)")

# 1. inspect
sha = timed(["sha256sum", DIT])
row("inspect DiT-XL/2 .pt (no hash)", timed([DITKIT, "inspect", DIT]), "sha256sum of the file", sha, "<= 0.5 s")
row("inspect --hash DiT-XL/2 .pt (XXH3-128)", timed([DITKIT, "inspect", "--hash", DIT]), "sha256sum of the file", sha)
row("inspect --sha256 DiT-XL/2 .pt", timed([DITKIT, "inspect", "--sha256", DIT]), "sha256sum of the file", sha)
# The conversions' floor: the whole source file's SHA-256 on one core, here OpenSSL's (SHA-NI where the CPU has it).
sha_floor = timed(["openssl", "dgst", "-sha256", DIT]) if shutil.which("openssl") else None

# 2-3. convert, against cp and torch.load + safetensors.save_file
# CONVERT_RUNS interleaved rounds (default 5), each of cp, cp + sync and the three conversions, so
# each conversion is paired with the copies of its own round; each round starts one command later
# than the round before, so no command is always the first to write after the others' files were
# deleted (on this VM, a writer that gets memory the host has not backed recently pays for it in
# kernel time: cp of the warm 2.7 GB file takes 0.8 s or 7 s). So before each command every output
# of the others is deleted (no command waits on the writeback of another's dirty pages: a kept copy
# of 2.7 GB made the f32 conversions, which hand their writes to writeback as they go, wait on the
# disk for it) and 3 GB of memory are written once and freed, so each command starts from the same
# state: only the source in the page cache, and pages the host backs at the head of the free lists.
# (In the run of cf24e85 the copy was deleted right after cp, so cp always wrote into the pages freed
# longest ago: 5.9 s against 2.5 s for cp + sync.)
# Each type converts three times per round: as a user converts one source to several types (the
# source's SHA-256 remembered from an earlier conversion of the same unchanged file, in the benchmark's
# own DITKIT_CACHE), with --rehash (the source read for its hash again: a file never seen before), and
# remembered with --no-sync (moved into place without waiting for the disk, as cp and save_file are).
copy, copy_synced = os.path.join(OUT, "copy.pt"), os.path.join(OUT, "copy-synced.pt")
CONVERT_DTYPES = ("f32", "f16", "int8")
CONVERT_VARIANTS = (("", []), ("-rehash", ["--rehash"]), ("-nosync", ["--no-sync"]))
convert_runs = {k: [] for k in ("cp", "cps") + tuple(d + suffix for d in CONVERT_DTYPES for suffix, _ in CONVERT_VARIANTS)}
commands = [("cp", ["cp", DIT, copy], copy), ("cps", ["sh", "-c", "cp \"$0\" \"$1\" && sync \"$1\"", DIT, copy_synced], copy_synced)] + [
    (d + suffix, [DITKIT, "convert", DIT, "-o", os.path.join(OUT, "xl-%s%s.ditkit" % (d, suffix)), "--dtype", d] + flags,
     os.path.join(OUT, "xl-%s%s.ditkit" % (d, suffix)))
    for d in CONVERT_DTYPES for suffix, flags in CONVERT_VARIANTS]
shutil.rmtree(os.path.join(OUT, "cache"), ignore_errors=True)
os.environ["DITKIT_CACHE"] = os.path.join(OUT, "cache")
run([DITKIT, "convert", DIT, "-o", os.path.join(OUT, "xl-f16.ditkit"), "--dtype", "f16", "--force"])   # remembers the source's SHA-256


def same_start():
    for _, _, out in commands:
        drop(out)()
    warm = bytearray(3 << 30)
    warm[::4096] = bytes(len(warm) // 4096)   # one write a page: each page is allocated
    del warm


for r in range(int(os.environ.get("CONVERT_RUNS", "5"))):
    for step in range(len(commands)):
        key, cmd, out = commands[(r + step) % len(commands)]
        convert_runs[key].append(timed(cmd, runs=1, before=same_start))
for key, cmd, out in commands:
    if out in (copy, copy_synced) or key.endswith(("-rehash", "-nosync")):
        drop(out)()
    elif not os.path.exists(out):
        run(cmd)   # the bundles the next sections read
cp_runs, cps_runs = convert_runs["cp"], convert_runs["cps"]
cp, cps = merged(cp_runs), merged(cps_runs)
torch_convert = {}
for d in ("f32", "f16"):
    st = os.path.join(OUT, "torch-%s.safetensors" % d)
    torch_convert[d] = inner(json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "convert", DIT, st, d], env=env)[0])
for d in CONVERT_DTYPES:
    base = "f16" if d == "f16" else "f32"
    for key, task in ((d + "-rehash", "convert --dtype %s --rehash" % d), (d, "convert --dtype %s, SHA-256 remembered" % d),
                      (d + "-nosync", "convert --dtype %s --no-sync, SHA-256 remembered" % d)):
        t = merged(convert_runs[key])
        row(task, t, "cp of the source, same rounds", cp, "<= 1.5", rss_target_mb=256, paired=paired_ratios(convert_runs[key], cp_runs))
        row(task, t, "cp + sync of the copy (durable), same rounds", cps, paired=paired_ratios(convert_runs[key], cps_runs))
        if sha_floor and key.endswith("-rehash"):
            row(task, t, "SHA-256 of the source alone (openssl dgst)", sha_floor)
        row(task, t, "torch.load + %ssave_file (%s)" % (".half() + " if d == "f16" else "", base), torch_convert[base], "<= 0.2")

# BENCH_ONLY=convert stops here: the inspections and the conversions against cp and PyTorch (about
# 15 minutes instead of 70), for a change that touches nothing else.
packs, quant_rows = [], []
if os.environ.get("BENCH_ONLY", "") != "convert":
    # 4. open a bundle and read one tensor, against safetensors safe_open + get_tensor
    name = "blocks.13.mlp.fc1.weight"
    o = inner(json_lines([BENCH, "open", os.path.join(OUT, "xl-f32.ditkit"), name], env=env)[0])
    s = inner(json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "get-tensor", os.path.join(OUT, "torch-f32.safetensors"), name], env=env)[0])
    row("open bundle + read one tensor (18 MB)", o, "safe_open + get_tensor", s, "<= 20 ms")

    # 5. forward passes against PyTorch CPU with the same thread count; quantized against float32.
    for q in ("q8_0", "q4_k"):
        run([BENCH, "requantize", os.path.join(OUT, "xl-f32.ditkit"), os.path.join(OUT, "xl-%s.ditkit" % q), q])
    # The f32 forward against PyTorch: at least 5 rounds, each of one DiTKit process and one PyTorch
    # process (each a warm-up and one timed forward), paired round by round, which of the two goes first
    # alternating, as the FLUX blocks below (one process of each, a minute apart, put the VM's drift into
    # the ratio: 0.75x, 0.86x and 1.01x in three runs on one host).
    fwd_ours, fwd_theirs = [], []
    for i in range(max(RUNS, 5)):
        for step in ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours"):
            if step == "ours":
                fwd_ours.append(inner(json_lines([BENCH, "dit-forward", os.path.join(OUT, "xl-f32.ditkit")], env=dict(env, RUNS="1"))[0]))
            else:
                fwd_theirs.append(inner(json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "dit-forward", DIT], env=dict(env, RUNS="1"))[0]))
    row("DiT-XL/2 forward, batch 1, 256 px, f32", merged(fwd_ours), "PyTorch CPU forward, same rounds", merged(fwd_theirs), "<= 1.0",
        paired=paired_ratios(fwd_ours, fwd_theirs))
    # The five bundles run in one process in interleaved rounds (FWD_RUNS, default 7): each quantized
    # forward is paired with the f32 forward of the same round, so a slow minute of the VM slows both.
    FWD_DTYPES = ("f32", "f16", "int8", "q8_0", "q4_k")
    fwd_env = dict(env, RUNS=os.environ.get("FWD_RUNS", "7"))
    fwd_json = json_lines([BENCH, "dit-forwards", "1"] + [os.path.join(OUT, "xl-%s.ditkit" % d) for d in FWD_DTYPES], env=fwd_env)
    fwd = {d: inner(j) for d, j in zip(FWD_DTYPES, fwd_json)}


    def rounds(j):
        """The single runs of a dit-forwards measurement."""
        return [M(w, c) for w, c in zip(j["runs"], j["cpu_runs"])]


    for d, j in zip(FWD_DTYPES[1:], fwd_json[1:]):
        row("DiT-XL/2 forward, batch 1, 256 px, %s" % d, fwd[d], "DiTKit f32 forward, same rounds", fwd["f32"], "<= 1.2",
            paired=paired_ratios(rounds(j), rounds(fwd_json[0])))
    vb = os.path.join(OUT, "vae-f32.ditkit")
    run([DITKIT, "convert", VAE, "-o", vb, "--force"])
    f = inner(json_lines([BENCH, "vae-decode", vb, "256"], env=env)[0])
    p = inner(json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "vae-decode", VAE_DIR, "256"], env=env)[0])
    row("SD-VAE decode, batch 1, 256 px", f, "PyTorch CPU decode", p, "<= 1.5")

    # 6. verify --against, end to end (about 15 s each), against PyTorch running the same forwards: the
    # bundle's and the source's, batch 4 each. At least 5 interleaved rounds, each of one PyTorch forward
    # (after its warm-up, in its own process) and one verify per dtype, PyTorch first in every other
    # round; the ratios are paired round by round.
    VERIFY_DTYPES = ("int8", "f16")
    torch_b4, verify_runs = [], {d: [] for d in VERIFY_DTYPES}


    def verify_torch_once():
        torch_b4.append(inner(json_lines([PY, os.path.join(HERE, "pytorch_baselines.py"), "dit-forward", DIT, "4"], env=dict(env, RUNS="1"))[0]))


    def verify_ours_once():
        for d in VERIFY_DTYPES:
            verify_runs[d].append(timed([DITKIT, "verify", os.path.join(OUT, "xl-%s.ditkit" % d), "--against", DIT], runs=1))


    for i in range(max(RUNS, 5)):
        for step in (verify_torch_once, verify_ours_once) if i % 2 == 0 else (verify_ours_once, verify_torch_once):
            step()
    torch_two = M(2 * statistics.median(t.wall for t in torch_b4), 2 * statistics.median(t.cpu for t in torch_b4))
    for d in VERIFY_DTYPES:
        row("verify %s --against .pt (2 forwards, batch 4)" % d, merged(verify_runs[d]), "PyTorch: the same 2 forwards, same rounds",
            torch_two, "<= 1.0" if d == "int8" else None, paired=paired_ratios(verify_runs[d], torch_b4, factor=2))

    # 7. FLUX.1 blocks at 1024 px (4096 image + 512 text tokens), FLUX.1-dev's width, against diffusers.
    fb = os.path.join(OUT, "flux-blocks.ditkit")
    run([DITKIT, "convert", FLUX_BLOCKS, "-o", fb, "--force"])
    # At least 5 rounds, each of one DiTKit process and one diffusers process (each a warm-up and one
    # timed forward), paired round by round; which of the two goes first alternates, so a drift of the
    # VM's speed within a round (10-30 % from one minute to the next) does not always favour the same one.
    FLUX_ROUNDS = max(RUNS, 5)
    flux_ours, flux_theirs = [], []


    def flux_ours_once():
        flux_ours.append({j["measure"]: inner(j) for j in json_lines([BENCH, "flux-blocks", fb, "1024", "512"], env=dict(env, RUNS="1"))})


    def flux_theirs_once():
        flux_theirs.append({j["measure"]: inner(j) for j in json_lines(
            [PY, os.path.join(HERE, "pytorch_baselines.py"), "flux-blocks", FLUX_BLOCKS, "1024", "512"], env=dict(env, RUNS="1"))})


    for i in range(FLUX_ROUNDS):
        for step in ((flux_ours_once, flux_theirs_once) if i % 2 == 0 else (flux_theirs_once, flux_ours_once)):
            step()
        print("  FLUX round %d (%s first): DiTKit %s; diffusers %s" % (
            i + 1, "DiTKit" if i % 2 == 0 else "diffusers",
            ", ".join("%s %.2f s" % (k, v.wall) for k, v in sorted(flux_ours[-1].items())),
            ", ".join("%s %.2f s" % (k, v.wall) for k, v in sorted(flux_theirs[-1].items()))), flush=True)
    for task, ours_key, theirs_name, theirs_key, target in (
            ("FLUX double-stream block, 4096+512 tokens", "flux-double-block", "diffusers FluxTransformerBlock", "torch-flux-double-block", "<= 1.0"),
            ("FLUX single-stream block, 4096+512 tokens", "flux-single-block", "diffusers FluxSingleTransformerBlock", "torch-flux-single-block", "<= 1.0"),
            ("FLUX 1+1-block forward, 1024 px", "flux-forward", "diffusers forward", "torch-flux-forward", None)):
        a, b = [m[ours_key] for m in flux_ours], [m[theirs_key] for m in flux_theirs]
        wall, cpu = paired_ratios(a, b)
        row(task, M(statistics.median(x.wall for x in a), statistics.median(x.cpu for x in a) if cpu else None), theirs_name + ", same rounds",
            M(statistics.median(x.wall for x in b), statistics.median(x.cpu for x in b) if cpu else None), target, paired=(wall, cpu))
    shutil.rmtree(fb, ignore_errors=True)
    # The FLUX blocks' attention alone (4608 tokens, 24 heads of 128), rounds of alternating order in one process:
    # the bands of all heads on workers side by side, one thread per product (what a forward runs for sequences
    # this long), against one head at a time with each product on OpenBLAS's threads.
    att = {j["measure"]: inner(j) for j in json_lines([BENCH, "attention", "4608", "24", "128"], env=dict(env, RUNS=str(max(RUNS, 5))))}
    row("attention, 4608 tokens, 24 heads of 128", att["attention-heads-in-parallel"], "the same, one head at a time",
        att["attention-one-head-at-a-time"])

    # Packs: compression ratio and speed per dtype (zstd level 3, all cores, long-distance matching).
    packs = []
    for d in ("f32", "f16", "int8"):
        b = os.path.join(OUT, "xl-%s.ditkit" % d)
        z = os.path.join(OUT, "xl-%s.ditkit.zst" % d)
        t = timed([DITKIT, "pack", b, "-o", z], runs=1, before=drop(z))
        u = timed([DITKIT, "unpack", z, "-o", os.path.join(OUT, "unpacked")], runs=1, before=drop(os.path.join(OUT, "unpacked")))
        size_in = os.path.getsize(os.path.join(b, "weights.bin"))
        size_out = os.path.getsize(z)
        packs.append((d, size_in, size_out, t.wall, u.wall))
        print("pack %-4s %8.1f MB -> %8.1f MB  ratio %.3f  pack %.1f MB/s  unpack+verify %.1f MB/s" % (
            d, size_in / 1e6, size_out / 1e6, size_in / size_out, size_in / t.wall / 1e6, size_in / u.wall / 1e6), flush=True)
        os.remove(z)
    shutil.rmtree(os.path.join(OUT, "unpacked"), ignore_errors=True)

    # Block types: quantize and dequantize speed per type (MB/s of float32 data), one thread and all cores.
    quant_rows = json_lines([BENCH, "quants", "16"], env=env)

    # Scale: several conversions with bounded parallelism.
    jobs_in = [DIT, VAE]
    both = timed(["sh", "-c", "cp \"$0\" \"$2/a\" && cp \"$1\" \"$2/b\"", DIT, VAE, OUT], runs=1)
    for f in ("a", "b"):
        os.remove(os.path.join(OUT, f))
    for jobs in (1, 2):
        many = os.path.join(OUT, "many")
        t = timed([DITKIT, "convert", *jobs_in, "-o", many, "--dtype", "f16", "--jobs", str(jobs)], runs=1, before=drop(many))
        row("convert DiT-XL/2 + SD-VAE f16 --jobs %d" % jobs, t, "cp of both sources", both)
    shutil.rmtree(os.path.join(OUT, "many"), ignore_errors=True)

# The outputs (8 GB) make room for the FLUX.1 stand-in's (Benchmarks/bench_flux.py).
shutil.rmtree(OUT, ignore_errors=True)

print("\nload average over the measurements: min %.2f, median %.2f, max %.2f; at the end %.2f %.2f %.2f" % (
    min(loads), statistics.median(loads), max(loads), *os.getloadavg()))
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
print("| task | DiTKit | CPU | baseline | baseline time | baseline CPU | ratio | CPU ratio | target | peak RSS |")
print("|---|---|---|---|---|---|---|---|---|---|")
for task, d, bn, b, ratio, cpu_ratio, target, v in rows:
    print("| %s | %.3f s | %s | %s | %.3f s | %s | %.2f | %s | %s | %s |" % (
        task, d.wall, "%.2f s" % d.cpu if d.cpu else "", bn, b.wall, "%.2f s" % b.cpu if b.cpu else "", ratio,
        "%.2f" % cpu_ratio if cpu_ratio else "", ("%s: %s" % (target, v)) if target else v, "" if d.rss is None else "%d MB" % (d.rss // 1024)))

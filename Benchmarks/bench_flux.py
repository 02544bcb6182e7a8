#!/usr/bin/env python3
"""FLUX.1-dev at full size: time and memory of convert, check, verify and a forward pass on the
stand-in from Benchmarks/make_flux_standin.py (never committed).

    python Benchmarks/bench_flux.py DATA DITKIT DITKIT_BENCH [SIZE TOKENS]

Every command runs once (a run streams 24 GB). For each: wall time, peak resident memory as
`/usr/bin/time -v` reports it (every resident page, page cache of the mapped source included), and
the peak of the process's own (anonymous) memory, sampled from /proc/PID/status every 50 ms. Bundles
are deleted after use (an f16 bundle is 23.8 GB, an int8 one 21.6 GB); the script refuses to start a
conversion without room for its output.
"""
import os
import re
import shutil
import subprocess
import sys
import threading
import time

DATA, DITKIT, BENCH = sys.argv[1], sys.argv[2], sys.argv[3]
SIZE = sys.argv[4] if len(sys.argv) > 4 else "256"
TOKENS = sys.argv[5] if len(sys.argv) > 5 else "256"
SOURCE = os.path.join(DATA, "flux1-dev.safetensors")
OUT = os.path.join(DATA, "flux-out")
os.makedirs(OUT, exist_ok=True)
rows = []


def anon_peak(pid, result, stop):
    """Max RssAnon (kB) of `pid` and its descendants, sampled until `stop` is set."""
    peak = 0
    while not stop.is_set():
        total = 0
        for p in [pid] + children(pid):
            try:
                with open("/proc/%d/status" % p) as f:
                    m = re.search(r"RssAnon:\s+(\d+)", f.read())
                    total += int(m.group(1)) if m else 0
            except OSError:
                pass
        peak = max(peak, total)
        time.sleep(0.05)
    result.append(peak)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def measure(task, cmd, env=None, allow_fail=False):
    stop, result = threading.Event(), []
    t = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-v"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    th = threading.Thread(target=anon_peak, args=(p.pid, result, stop))
    th.start()
    out, err = p.communicate()
    stop.set()
    th.join()
    seconds = time.perf_counter() - t
    if p.returncode != 0 and allow_fail:
        task += " (exit %d)" % p.returncode
    elif p.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), err[-3000:]))
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    rss = int(m.group(1)) if m else 0
    rows.append((task, seconds, rss, result[0] if result else 0))
    print("%-58s %9.1f s  peak RSS %6d MB  own %6d MB" % (task, seconds, rss // 1024, (result[0] if result else 0) // 1024), flush=True)
    return out


def room(needed_gb):
    free = shutil.disk_usage(OUT).free / 1e9
    if free < needed_gb + 2:
        sys.exit("only %.1f GB free in %s; %d GB needed" % (free, OUT, needed_gb))


def drop(path):
    shutil.rmtree(path, ignore_errors=True)


env = dict(os.environ, RUNS="1")
measure("inspect flux1-dev.safetensors (780 tensors, 23.8 GB)", [DITKIT, "inspect", SOURCE])
for dtype, gb in (("f16", 24), ("int8", 22)):
    b = os.path.join(OUT, "flux-dev-%s.ditkit" % dtype)
    drop(b)
    room(gb)
    measure("convert --dtype %s" % dtype, [DITKIT, "convert", SOURCE, "-o", b, "--dtype", dtype])
    measure("check (%s bundle)" % dtype, [DITKIT, "check", b])
    out = measure("forward, %s bundle, %s px + %s text tokens" % (dtype, SIZE, TOKENS), [BENCH, "flux-forward", b, SIZE, TOKENS], env=env)
    print("   ", out.strip())
    if dtype == "int8":
        # Random weights through 57 blocks: the verdict is reported, the memory is the point.
        out = measure("verify int8 --against the bf16 source (2 forwards, 2×(48+8) tokens)", [DITKIT, "verify", b, "--against", SOURCE], allow_fail=True)
        print("   ", "\n    ".join(l for l in out.splitlines() if l.startswith(("output", "PASSED", "FAILED"))))
    drop(b)
out = measure("forward from the bf16 source, %s px + %s text tokens" % (SIZE, TOKENS), [BENCH, "flux-forward", SOURCE, SIZE, TOKENS], env=env)
print("   ", out.strip())

print()
print("| task | time | peak RSS | own memory |")
print("|---|---|---|---|")
for task, s, rss, own in rows:
    print("| %s | %.1f s | %d MB | %d MB |" % (task, s, rss // 1024, own // 1024))

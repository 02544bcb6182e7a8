#!/usr/bin/env bash
# make bench: builds DiTKit in release, prepares a virtualenv with torch (outside the repository),
# writes full-size stand-ins with real torch.save, and runs Benchmarks/bench.py, then the FLUX.1-dev
# stand-in (Benchmarks/bench_flux.py; BENCH_FLUX=0 skips it: it needs 24 GB of disk and 12 minutes to an hour;
# FLUX_TYPES="q6_k q5_k q4_k+mod ..." adds block types to its fidelity table, about 4 minutes each;
# +mod converts with --quantize-modulations; BENCH_ONLY=convert stops bench.py after the inspections and
# the DiT-XL/2 conversions).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_VENV="${BENCH_VENV:-$HOME/.cache/ditkit/bench-venv}"
BENCH_DATA="${BENCH_DATA:-$HOME/.cache/ditkit/bench-data}"
command -v /usr/bin/time >/dev/null || { SUDO=$([ "$(id -u)" = 0 ] || echo sudo); $SUDO apt-get install -y -qq time; }
if ! "$BENCH_VENV/bin/python" -c "import torch, timm, diffusers, safetensors, h5py" 2>/dev/null; then
  echo "bench: installing torch, timm, diffusers, safetensors, h5py into $BENCH_VENV"
  python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check torch timm diffusers safetensors h5py numpy
fi
# Free page reporting (a VM's balloon device): the guest hands every freed page back to the host at
# once (min_free_ms 0 on this VM), and the next first touch of such a page costs a fault in the host.
# Every command here frees and allocates gigabytes of page cache, so cp of a warm 2.7 GB file took 0.8 s
# or 7 s at random (all of it kernel time). Where the guest lets root hold freed pages for a while, the
# run holds them for 5 min (restored on exit; BENCH_HOLD_FREE_PAGES=0 leaves the machine as it is) and touches
# most of the free memory once, so both a command and its baseline reuse pages the host already backs.
HOLD=/sys/module/page_reporting/parameters/min_free_ms
BENCH_FREE_PAGES=""
if [ -f "$HOLD" ]; then
  BENCH_FREE_PAGES="reported to the host $(cat "$HOLD") ms after they are freed"
fi
if [ -f "$HOLD" ] && [ "${BENCH_HOLD_FREE_PAGES:-1}" != 0 ]; then
  if [ -w "$HOLD" ]; then
    HOLD_BEFORE=$(cat "$HOLD")
    # 5 minutes: the longest this guest accepts (it refuses 301000).
    if echo 300000 2>/dev/null > "$HOLD"; then
      trap 'echo "$HOLD_BEFORE" > "$HOLD"' EXIT
      BENCH_FREE_PAGES="held by the guest for 5 min before they are reported (min_free_ms $HOLD_BEFORE -> 300000)"
    else
      echo "bench: $HOLD refused 300000: freed pages are not held" >&2
      HOLD_BEFORE=""
    fi
  else
    echo "bench: $HOLD is not writable (run as root to hold freed pages): figures may swing with the host's faults" >&2
  fi
fi
export BENCH_FREE_PAGES
swift build -c release --product ditkit
swift build -c release --product ditkit-bench
"$BENCH_VENV/bin/python" Benchmarks/make_standins.py "$BENCH_DATA"
if [ -n "${HOLD_BEFORE:-}" ]; then
  "$BENCH_VENV/bin/python" - <<'PY'
import numpy as np
available = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemAvailable:")) * 1024
size = max(0, min(16 << 30, available - (6 << 30)))
if size:
    a = np.ones(size, np.uint8)  # every page written once, then freed and held
    del a
print("bench: touched %.1f GB of free memory once" % (size / 1e9), flush=True)
PY
fi
"$BENCH_VENV/bin/python" Benchmarks/bench.py "$BENCH_DATA" .build/release/ditkit .build/release/ditkit-bench
if [ "${BENCH_FLUX:-1}" != 0 ]; then
  "$BENCH_VENV/bin/python" Benchmarks/make_flux_standin.py "$BENCH_DATA"
  "$BENCH_VENV/bin/python" Benchmarks/bench_flux.py "$BENCH_DATA" .build/release/ditkit .build/release/ditkit-bench
fi

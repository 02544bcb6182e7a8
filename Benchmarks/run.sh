#!/usr/bin/env bash
# make bench: builds DiTKit in release, prepares a virtualenv with torch (outside the repository),
# writes full-size stand-ins with real torch.save, and runs Benchmarks/bench.py, then the FLUX.1-dev
# stand-in (Benchmarks/bench_flux.py; BENCH_FLUX=0 skips it: it needs 24 GB of disk for an hour;
# FLUX_TYPES="q6_k q5_k q4_k+mod ..." adds block types to its fidelity table, about 4 minutes each;
# +mod converts with --quantize-modulations).
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
swift build -c release --product ditkit
swift build -c release --product ditkit-bench
"$BENCH_VENV/bin/python" Benchmarks/make_standins.py "$BENCH_DATA"
"$BENCH_VENV/bin/python" Benchmarks/bench.py "$BENCH_DATA" .build/release/ditkit .build/release/ditkit-bench
if [ "${BENCH_FLUX:-1}" != 0 ]; then
  "$BENCH_VENV/bin/python" Benchmarks/make_flux_standin.py "$BENCH_DATA"
  "$BENCH_VENV/bin/python" Benchmarks/bench_flux.py "$BENCH_DATA" .build/release/ditkit .build/release/ditkit-bench
fi

#!/usr/bin/env bash
# make fuzz: builds the libFuzzer harnesses with address sanitizer and runs each target.
#   Fuzz/run.sh [SECONDS] [TARGET...]      (default 60 s each; targets: see ditkit-fuzz)
# Working corpora live in .build-fuzz/corpus/TARGET (seeded from Fuzz/corpus/TARGET); crashes,
# leaks and timeouts are written to Fuzz/findings/ and must be fixed and added to
# Tests/Fixtures/fuzz/ as regression inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(pickle torchzip torchpickle legacy safetensors gguf manifest hdf5 pack json)
# swiftc keeps only the last of several -sanitize= options, and SwiftPM emits --sanitize values in
# no fixed order, so the combined list is passed again last: coverage and ASan on every module.
swift build -c release --product ditkit-fuzz --scratch-path .build-fuzz --sanitize fuzzer --sanitize address \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
BIN=.build-fuzz/release/ditkit-fuzz
mkdir -p Fuzz/findings .build-fuzz/logs
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p ".build-fuzz/corpus/$t"
  echo "== fuzz $t for ${SECONDS_EACH}s"
  if ! DITKIT_FUZZ_TARGET="$t" ASAN_OPTIONS=detect_leaks=1 "$BIN" ".build-fuzz/corpus/$t" "Fuzz/corpus/$t" \
      -max_total_time="$SECONDS_EACH" -max_len=131072 -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="Fuzz/findings/$t-" -print_final_stats=1 > ".build-fuzz/logs/$t.log" 2>&1; then
    echo "   FINDING: see .build-fuzz/logs/$t.log and Fuzz/findings/"
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|cov: " ".build-fuzz/logs/$t.log" | tail -3 | sed 's/^/   /'
done
exit $status

#!/usr/bin/env bash
# Runs the fuzz targets (cargo-fuzz, libFuzzer with AddressSanitizer), each for SECONDS, starting
# from its committed seeds (fuzz/seeds/<target>: hand-written inputs and every crash found so far)
# and the corpus of earlier runs (fuzz/corpus/<target>, not committed). A crash fails the run and
# leaves its input in fuzz/artifacts/<target>/: turn it into a unit test next to the code it broke
# and copy it into fuzz/seeds/<target>/.
#   fuzz/run.sh SECONDS [TARGET...]        (make fuzz: 300 s each; make fuzz-smoke: 10 s each)
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-300}
shift || true
# cargo-fuzz passes -Z flags to rustc and cargo; a stable toolchain accepts them this way.
export RUSTC_BOOTSTRAP=1
# Its own target directory next to the main one: sanitizer flags would rebuild everything there.
: "${CARGO_TARGET_DIR:=$HOME/.cache/mcp-authd/target}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$(dirname "$CARGO_TARGET_DIR")/fuzz-target}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --version 0.13.2 >/dev/null
fi
if [ $# -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
else
  targets=("$@")
fi
cargo fuzz build
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  log=$(mktemp)
  if ! cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz target $t: crash (input in fuzz/artifacts/$t/)" >&2
    rm -f "$log"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz target $t: ${runs:-?} inputs in ${secs} s, no crash; corpus $(find "corpus/$t" -type f | wc -l) inputs"
  rm -f "$log"
done

#!/usr/bin/env bash
# Long fuzz runs under libFuzzer with coverage feedback, on stable Rust:
#   tests/fuzz/run.sh [TARGET ...]          every target (or those named), RUNS inputs each
# Environment: RUNS (default 10000000 inputs per target), JOBS (parallel targets, default 1),
# CARGO_TARGET_DIR (default ~/.cache/samtal/fuzz-target). Needs g++ for libFuzzer's sources.
# Each run starts from corpus/<target>/ and adds what it finds to a work corpus beside the build;
# a crash is written as crash-<hash> in the current directory: add it to corpus/<target>/ and fix.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/samtal/fuzz-target}"
runs="${RUNS:-10000000}"
targets=("$@")
if ((${#targets[@]} == 0)); then
    targets=(signaling_message session_rooms sdp_publish rtp_forward jwt jwks export)
fi
# What cargo-fuzz passes: sanitizer coverage (8-bit counters, PC table, comparison tracing).
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts and proc macros, which are not linked
# with libFuzzer (as cargo-fuzz does).
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo build --release --target "$host" --manifest-path "$here/libfuzzer/Cargo.toml" --bins
bin="$CARGO_TARGET_DIR/$host/release"
work="$CARGO_TARGET_DIR/corpus"
run_one() {
    local t="$1"
    mkdir -p "$work/$t"
    "$bin/$t" -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "$work/$t" "$here/corpus/$t" 2>&1 | tee "$work/$t.log" | grep -E "^(Done|#[0-9]+ *DONE|stat::number_of_executed_units|stat::average_exec_per_sec|==|SUMMARY)" || true
}
export -f run_one
export here work runs bin
printf '%s\n' "${targets[@]}" | xargs -P "${JOBS:-1}" -I{} bash -c 'run_one {}'

#!/usr/bin/env bash
# wtd performance benchmark (SPEC §7). NOT part of scripts/test.sh: nothing here asserts on time.
#
#   scripts/bench.sh [run_bench.py options: --secs 2 --repeat 5 --pings 5000 --echo-rounds 5 --window 32 --no-pin]
#
# 1. cargo build --release                      → target/release/libwtd.so, examples/wtdr_bench
# 2. cc -O2 bench/c/wtd_bench.c against include/wtd.h and that library → build-release/bench/
# 3. cargo build --release of bench/rust (raw quinn baseline, own workspace, shared target/)
# 4. tests/interop/setup.sh if the pywebtransport 0.21.1 venv (build/interop-cache/py312) is missing
# 5. bench/run_bench.py: every measurement on 127.0.0.1, prints ONE table (same run, same machine)
#
# Environment: WTD_BENCH_THREADS (wtd runtime threads, default wtd's own), WTD_BENCH_BACKOFF
# (yield|spin: what the wtd_session_send blaster does on WTD_ERR_WOULD_BLOCK, default yield),
# WTD_BENCH_MAX_BUSY (wait, up to 5 min, until other processes use less than this % CPU; default 15).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { echo "[bench.sh] $*" >&2; }

log "cargo build --release (libwtd.so, and examples/wtdr_bench: wtd's Rust API without FFI)"
cargo build --release --lib >&2
cargo build --release --example wtdr_bench >&2

OUT="$ROOT/build-release/bench"
mkdir -p "$OUT/lib"
# Give the bench program its own copy of the cdylib under its SONAME (libwtd.so.0.2 for 0.2).
SONAME="$(readelf -d target/release/libwtd.so | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')"
cp -f target/release/libwtd.so "$OUT/lib/$SONAME"
ln -sf "$SONAME" "$OUT/lib/libwtd.so"
CC="${CC:-$(command -v cc || command -v gcc)}"
log "$CC -O2 bench/c/wtd_bench.c"
"$CC" -O2 -g -std=c11 -Wall -Wextra -I"$ROOT/include" "$ROOT/bench/c/wtd_bench.c" \
    -o "$OUT/wtd_bench" -L"$OUT/lib" -lwtd -Wl,-rpath,'$ORIGIN/lib' -lpthread

log "cargo build --release (bench/rust raw quinn baseline)"
(cd bench/rust && CARGO_TARGET_DIR="$ROOT/target" cargo build --release >&2)

if [ ! -x build/interop-cache/py312/bin/python ] ||
   ! build/interop-cache/py312/bin/python -c "import pywebtransport" 2>/dev/null; then
    log "pywebtransport venv missing: tests/interop/setup.sh"
    tests/interop/setup.sh >&2
fi

# Wait for a quiet machine: other processes' CPU use skews every figure on 2 cores.
busy_pct() {
    local a b
    read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
    sleep 1
    read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat
    local busy=$(( (u2+n2+s2+q2+sq2+st2) - (u1+n1+s1+q1+sq1+st1) ))
    local idle=$(( (i2+w2) - (i1+w1) ))
    echo $(( 100 * busy / (busy + idle) ))
}
MAX_BUSY="${WTD_BENCH_MAX_BUSY:-15}"
for _ in $(seq 1 300); do
    b="$(busy_pct)"
    [ "$b" -le "$MAX_BUSY" ] && break
    log "machine busy (${b}% CPU used by other processes), waiting for <= ${MAX_BUSY}%"
done
log "background CPU before the run: ${b}% (load average: $(cut -d' ' -f1-3 /proc/loadavg))"

python3 bench/run_bench.py "$@"
echo "  background CPU just before the run: ${b}%; load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

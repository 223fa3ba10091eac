#!/usr/bin/env bash
# The Go binding's suite (bindings/go): go vet, go test ./... against the CMake build, and the
# echo example. scripts/test.sh calls it after ctest; it also runs on its own.
#
#   scripts/test-go.sh           vet + tests + example
#   scripts/test-go.sh --bench   also `go test -bench` (the cgo figures in bindings/go/README.md),
#                                run against the release library (`cargo build --release --lib`, or
#                                WTD_RELEASE_LIB=<path to libwtd.so>) through LD_LIBRARY_PATH
#
# What it sets up when missing: the Go toolchain and pkg-config (apt-get install golang-go
# pkg-config, as root only; otherwise it says what to install), CMake via scripts/lib/tools.sh,
# the library through `cmake --install "$WTD_BUILD_DIR" --prefix "$WTD_BUILD_DIR/go-prefix"`
# (its lib/pkgconfig/wtd.pc is how `#cgo pkg-config: wtd` finds the header and library; an
# rpath to its lib/ is added with CGO_LDFLAGS), and the pywebtransport 0.21 peer venv
# (tests/interop/setup.sh, into build/interop-cache) that TestInteropPywebtransport021Server needs.
# Environment: WTD_BUILD_DIR (default <repo>/build; must hold a CMake build with examples-c),
# WTD_INTEROP_CACHE (default <repo>/build/interop-cache), GOFLAGS as usual.
# Output: go test's own lines ("ok  github.com/wtd/wtd/bindings/go ..."); exit status non-zero
# on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${WTD_BUILD_DIR:-$ROOT/build}"
BUILD_DIR="$(cd "$BUILD_DIR" 2>/dev/null && pwd)" || { echo "[go] no build directory ${WTD_BUILD_DIR:-$ROOT/build}: run cmake -S . -B build && cmake --build build" >&2; exit 1; }
BENCH=0
[ "${1:-}" = "--bench" ] && BENCH=1
log() { echo "[go] $*"; }

# --- toolchain ------------------------------------------------------------------------------
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        log "installing ${need[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "[go] missing: ${need[*]} (install Go >= 1.19 and pkg-config, e.g. apt-get install golang-go pkg-config)" >&2
        exit 1
    fi
fi
log "$(go version)"
export GOTOOLCHAIN=local GOPROXY=off   # stdlib only: never fetch anything
export GOCACHE="${GOCACHE:-$BUILD_DIR/go-cache}"
[ -n "${HOME:-}" ] || export GOPATH="${GOPATH:-$BUILD_DIR/go-path}"   # go needs one; CI may have no HOME

# --- the library, through pkg-config -------------------------------------------------------
if ! command -v cmake >/dev/null 2>&1; then
    # shellcheck source=lib/tools.sh
    . "$ROOT/scripts/lib/tools.sh"
    wtd_ensure_build_tools "$BUILD_DIR"
fi
[ -e "$BUILD_DIR/lib/libwtd.so" ] && [ -x "$BUILD_DIR/examples-c/wtd_echo_server" ] || {
    echo "[go] $BUILD_DIR has no CMake build of wtd (lib/libwtd.so, examples-c/wtd_echo_server): run cmake -S . -B build && cmake --build build" >&2
    exit 1
}
PREFIX="$BUILD_DIR/go-prefix"
cmake --install "$BUILD_DIR" --prefix "$PREFIX" >/dev/null
export PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
export CGO_LDFLAGS="-Wl,-rpath,$PREFIX/lib${CGO_LDFLAGS:+ $CGO_LDFLAGS}"
log "library: $(pkg-config --libs wtd) (wtd $(pkg-config --modversion wtd), from $PREFIX)"
export WTD_BUILD_DIR="$BUILD_DIR"

# --- the real peer ---------------------------------------------------------------------------
CACHE="${WTD_INTEROP_CACHE:-$ROOT/build/interop-cache}"
if [ ! -x "$CACHE/py312/bin/python" ] && [ "${WTD_GO_NO_PEERS:-0}" != 1 ]; then
    log "pywebtransport 0.21 venv missing: running tests/interop/setup.sh"
    WTD_INTEROP_CACHE="$CACHE" "$ROOT/tests/interop/setup.sh"
fi
export WTD_INTEROP_CACHE="$CACHE"

# --- vet, tests, example ---------------------------------------------------------------------
cd "$ROOT/bindings/go"
log "gofmt"
bad="$(gofmt -l .)"
[ -z "$bad" ] || { echo "[go] not gofmt-formatted: $bad" >&2; exit 1; }
log "go vet ./..."
go vet ./...
log "go build -tags wtd_no_pkgconfig ./... (the documented path without pkg-config)"
env -u PKG_CONFIG_PATH CGO_CFLAGS="-I$PREFIX/include" CGO_LDFLAGS="-L$PREFIX/lib -Wl,-rpath,$PREFIX/lib" \
    go build -tags wtd_no_pkgconfig ./...
log "go run ./examples/echo"
timeout 60 go run ./examples/echo
log "go test ./..."
go test -count=1 -timeout 300s -v ./...
log "go test -race ./... (the Go side's locking under the race detector)"
go test -race -count=1 -timeout 300s ./...

if [ "$BENCH" = 1 ]; then
    REL="${WTD_RELEASE_LIB:-}"
    if [ -z "$REL" ]; then
        log "release library: cargo build --release --lib (a no-op when up to date)"
        (cd "$ROOT" && cargo build --release --lib)
        REL="$ROOT/target/release/libwtd.so"
    fi
    rm -rf "$BUILD_DIR/go-release/lib"
    mkdir -p "$BUILD_DIR/go-release/lib"
    # Under the SONAME the test binary asks for (libwtd.so.0.2 for API 0.2).
    soname="$(readelf -d "$REL" 2>/dev/null | sed -n 's/.*SONAME.*\[\(.*\)\].*/\1/p')"
    cp "$REL" "$BUILD_DIR/go-release/lib/${soname:-libwtd.so.0}"
    log "go test -bench . (release library $REL)"
    LD_LIBRARY_PATH="$BUILD_DIR/go-release/lib" go test -run '^$' -bench . -benchtime 20000x -count 3 .
    log "go test -bench (send calls again, engine-owned: RuntimePoll, nothing to wake)"
    WTD_GO_BENCH_RUNTIME=poll LD_LIBRARY_PATH="$BUILD_DIR/go-release/lib" go test -run '^$' \
        -bench 'SessionSend|TransportTrySend|TransportSendBatch32' -benchtime 20000x -count 3 .
fi

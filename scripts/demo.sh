#!/usr/bin/env bash
# Demo: sets up CMake where it is missing (scripts/lib/tools.sh: cmake on PATH, else apt-get as
# root, else CMake from PyPI into build/tools), builds with CMake, starts the C echo server on a
# free port, runs the C echo client against it with the server's certificate hash pinned, prints
# both outputs and stops the server (SIGINT).
#
#   scripts/demo.sh             the echo demo above
#   scripts/demo.sh --browser [ARGS]   build, then run examples-c/wtd_browser_demo ARGS in the
#                               foreground: open http://127.0.0.1:8080/ in Chromium (Ctrl-C stops)
#
#   contract: `wtd_echo_server --port 0` prints a line `READY <port> <sha256-hex>` when listening;
#             `wtd_echo_client <url> --cert-hash <hex> --count N` sends N datagrams and prints echoes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${WTD_BUILD_DIR:-$ROOT/build}"
BIN="$BUILD_DIR/examples-c"
COUNT="${COUNT:-20}"
MODE=echo
if [ "${1:-}" = "--browser" ]; then
    MODE=browser
    shift
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--browser [wtd_browser_demo arguments]]" >&2
    exit 2
fi

# shellcheck source=lib/tools.sh
. "$ROOT/scripts/lib/tools.sh"
echo "== checking build tools"
wtd_ensure_build_tools "$BUILD_DIR"

echo "== building (cmake)"
cmake -S "$ROOT" -B "$BUILD_DIR" >/dev/null
cmake --build "$BUILD_DIR" --parallel "$(nproc 2>/dev/null || echo 2)"

if [ "$MODE" = browser ]; then
    [ -x "$BIN/wtd_browser_demo" ] || { echo "missing $BIN/wtd_browser_demo" >&2; exit 1; }
    echo "== starting $BIN/wtd_browser_demo $*"
    exec "$BIN/wtd_browser_demo" "$@"
fi

for exe in wtd_echo_server wtd_echo_client; do
    if [ ! -x "$BIN/$exe" ]; then
        echo "missing $BIN/$exe (examples-c/$exe.c not written yet?)" >&2
        exit 1
    fi
done

TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -INT "$SERVER_PID" 2>/dev/null || true
        sleep 1
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

echo "== starting $BIN/wtd_echo_server --port 0"
"$BIN/wtd_echo_server" --port 0 >"$TMP/server.out" 2>&1 &
SERVER_PID=$!

PORT="" HASH=""
for _ in $(seq 1 300); do   # up to 30 s
    if line="$(grep -m1 '^READY ' "$TMP/server.out" 2>/dev/null)"; then
        read -r _ PORT HASH <<<"$line"
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "server exited before it was ready:" >&2
        cat "$TMP/server.out" >&2
        exit 1
    fi
    sleep 0.1
done
if [ -z "$PORT" ] || [ -z "$HASH" ]; then
    echo "server did not print 'READY <port> <hash>' within 30 s:" >&2
    cat "$TMP/server.out" >&2
    exit 1
fi
echo "server ready on port $PORT, certificate sha256 $HASH"

URL="https://127.0.0.1:$PORT/demo"
echo "== $BIN/wtd_echo_client $URL --cert-hash $HASH --count $COUNT"
client_rc=0
"$BIN/wtd_echo_client" "$URL" --cert-hash "$HASH" --count "$COUNT" >"$TMP/client.out" 2>&1 \
    || client_rc=$?

echo "== stopping the server (SIGINT)"
kill -INT "$SERVER_PID" 2>/dev/null || true
for _ in $(seq 1 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "server did not exit within 5 s of SIGINT; killing it" >&2
    kill -KILL "$SERVER_PID" 2>/dev/null || true
fi
server_rc=0
wait "$SERVER_PID" 2>/dev/null || server_rc=$?
SERVER_PID=""

echo
echo "---------------- client output ----------------"
cat "$TMP/client.out"
echo "---------------- server output ----------------"
cat "$TMP/server.out"
echo "-----------------------------------------------"
echo "client exit status: $client_rc, server exit status: $server_rc"
exit "$client_rc"

#!/usr/bin/env bash
# The C# binding's suite (bindings/csharp) on Mono:
#   1. installs Mono's compiler and runtime when missing (apt-get, as root: mono-mcs mono-runtime);
#   2. uses the CMake build in WTD_BUILD_DIR (default <repo>/build; configured and built here —
#      library + wtd_echo_server — when it is missing);
#   3. generates the struct-layout table of include/wtd.h with the C compiler;
#   4. compiles Wtd.dll, the test program and the echo example with mcs into $WTD_BUILD_DIR/csharp;
#   5. runs the echo example (C# server ↔ C# client, C# client → C wtd_echo_server);
#   6. runs the test program, whose last line is "N passed, M failed" (exit 1 on any failure).
# Every step is bounded in time.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${WTD_BUILD_DIR:-$ROOT/build}"
CS="$ROOT/bindings/csharp"
OUT="$BUILD_DIR/csharp"

say() { printf '[test-csharp] %s\n' "$*"; }

if ! command -v mcs >/dev/null 2>&1 || ! command -v mono >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        say "installing Mono (mono-mcs mono-runtime) with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mono-mcs mono-runtime >/dev/null
    else
        echo "mcs/mono are missing; install them (Debian: apt-get install mono-mcs mono-runtime)" >&2
        exit 1
    fi
fi

if [ ! -e "$BUILD_DIR/lib/libwtd.so" ] || [ ! -x "$BUILD_DIR/examples-c/wtd_echo_server" ]; then
    say "building the native library and wtd_echo_server in $BUILD_DIR"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Debug}" >/dev/null
    cmake --build "$BUILD_DIR" --parallel "$(nproc 2>/dev/null || echo 2)" --target wtd_echo_server
fi

mkdir -p "$OUT"
say "struct layouts of include/wtd.h from the C compiler"
"$CS/tests/gen_layout.sh" "$ROOT/include/wtd.h" > "$OUT/layout.c"
"${CC:-cc}" -std=c11 -o "$OUT/layout" "$OUT/layout.c"
"$OUT/layout" > "$OUT/layout.txt"

say "compiling with $(mcs --version)"
MCS=(mcs -langversion:7.2 -warnaserror+ -nologo)
"${MCS[@]}" -target:library -unsafe -doc:"$OUT/Wtd.xml" -out:"$OUT/Wtd.dll" "$CS"/src/*.cs
"${MCS[@]}" -target:library -unsafe -define:WTD_NO_SPAN -out:"$OUT/Wtd-nospan.dll" "$CS"/src/*.cs
"${MCS[@]}" -target:exe -r:"$OUT/Wtd.dll" -r:System.Core.dll -out:"$OUT/WtdTests.exe" "$CS/tests/Tests.cs"
"${MCS[@]}" -target:exe -r:"$OUT/Wtd.dll" -out:"$OUT/Echo.exe" "$CS/examples/Echo.cs"

export LD_LIBRARY_PATH="$BUILD_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export MONO_ENV_OPTIONS="${MONO_ENV_OPTIONS:---debug}"

# The echo example: C# server, C# client against it, then against the C server.
run_example_pair() { # $1 = server command..., prints the client's output
    local log="$OUT/example-server.log"
    "$@" > "$log" 2>&1 &
    local pid=$!
    local ready=""
    for _ in $(seq 1 200); do
        ready="$(grep -m1 '^READY ' "$log" || true)"
        [ -n "$ready" ] && break
        sleep 0.1
    done
    if [ -z "$ready" ]; then
        kill "$pid" 2>/dev/null || true
        echo "server did not print READY:" >&2
        cat "$log" >&2
        return 1
    fi
    set -- $ready
    local rc=0
    timeout 60 mono "$OUT/Echo.exe" client "https://127.0.0.1:$2/echo" "$3" > "$OUT/example-client.log" 2>&1 || rc=$?
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    cat "$OUT/example-client.log"
    if [ "$rc" != 0 ] || [ "$(grep -c '^echo: hello ' "$OUT/example-client.log")" != 5 ]; then
        echo "echo example failed (exit $rc)" >&2
        return 1
    fi
}
say "echo example: C# server <-> C# client"
run_example_pair timeout 120 mono "$OUT/Echo.exe" server 0
say "echo example: C# client -> C wtd_echo_server"
run_example_pair timeout 120 "$BUILD_DIR/examples-c/wtd_echo_server" --host 127.0.0.1 --port 0

say "test program"
WTD_ECHO_SERVER="$BUILD_DIR/examples-c/wtd_echo_server" WTD_LAYOUT="$OUT/layout.txt" \
    timeout 900 mono "$OUT/WtdTests.exe"

#!/usr/bin/env bash
# THE test command for wtd. Runs every check in order and stops at the first failure:
#   build tools (scripts/lib/tools.sh: CMake from apt-get or PyPI where it is missing) →
#   cargo fmt --check (warning only) → cargo test → cmake configure + build (dev profile) →
#   ctest → header drift → tests/interop/run.sh (when present and executable).
# Works from any directory; safe to run repeatedly (reuses target/ and build/).
# Environment: WTD_BUILD_DIR (default <repo>/build), CMAKE_BUILD_TYPE (default Debug → cargo dev
# profile), WTD_SANITIZE (default ON).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${WTD_BUILD_DIR:-$ROOT/build}"
BUILD_TYPE="${CMAKE_BUILD_TYPE:-Debug}"
JOBS="$(nproc 2>/dev/null || echo 2)"

section() { printf '\n==================== %s ====================\n' "$*"; }
current=""
trap 'rc=$?; if [ $rc -ne 0 ]; then printf "\nFAILED (exit %s) in: %s\n" "$rc" "$current" >&2; fi' EXIT
step() { current="$*"; section "$*"; }

step "build tools (cmake, ctest, a C compiler, cargo)"
# shellcheck source=lib/tools.sh
. "$ROOT/scripts/lib/tools.sh"
wtd_ensure_build_tools "$BUILD_DIR"

step "cargo fmt --check (warning only)"
if cargo fmt --version >/dev/null 2>&1; then
    if ! cargo fmt --check >/dev/null 2>&1; then
        echo "WARNING: code is not rustfmt-formatted (cargo fmt --check); files:"
        cargo fmt --check -- -l 2>/dev/null | sed 's/^/  /' || true
    else
        echo "formatted"
    fi
else
    echo "WARNING: rustfmt is not installed; skipping the format check"
fi

step "cargo clippy --all-targets -D warnings"
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --all-targets -- -D warnings
else
    echo "WARNING: clippy is not installed; skipping the lint step"
fi

step "cargo test"
cargo test

step "cmake configure (${BUILD_TYPE})"
cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DWTD_SANITIZE="${WTD_SANITIZE:-ON}"

step "cmake build"
cmake --build "$BUILD_DIR" --parallel "$JOBS"

step "ctest"
ctest --test-dir "$BUILD_DIR" --output-on-failure
step "Go binding (scripts/test-go.sh)"; WTD_BUILD_DIR="$BUILD_DIR" "$ROOT/scripts/test-go.sh"
step "C# binding (scripts/test-csharp.sh)"; WTD_BUILD_DIR="$BUILD_DIR" "$ROOT/scripts/test-csharp.sh"

step "header drift (include/wtd.h vs git)"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1 || [ -e "$ROOT/.git" ]; then
    if ! git -C "$ROOT" ls-files --error-unmatch -- include/wtd.h >/dev/null 2>&1; then
        echo "include/wtd.h is not tracked by git: commit the generated header" >&2
        exit 1
    fi
    if ! git -C "$ROOT" --no-pager diff --exit-code -- include/wtd.h; then
        echo "include/wtd.h differs from the committed header: review and commit it" >&2
        exit 1
    fi
    echo "include/wtd.h matches the committed header"
else
    echo "not a git checkout; header drift not checked"
fi

step "interop (tests/interop/run.sh)"
if [ -x "$ROOT/tests/interop/run.sh" ]; then
    WTD_BIN_DIR="$BUILD_DIR/examples-c" "$ROOT/tests/interop/run.sh"
else
    echo "skipped: tests/interop/run.sh is missing or not executable"
fi

current=""
section "ALL CHECKS PASSED"

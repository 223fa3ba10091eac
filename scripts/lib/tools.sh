# shellcheck shell=bash
# Sourced by scripts/demo.sh and scripts/test.sh (and .ci/run): makes sure the native build tools
# are usable before anything is built, and says what it does. Sourcing it only defines functions.
#
#   wtd_ensure_build_tools BUILD_DIR
#
# checks for cargo and a C compiler (with a clear message when one is missing, nothing is installed
# for those), then finds CMake (>= 3.16, with ctest) in this order:
#   1. `cmake` already on PATH;
#   2. a CMake installed earlier by step 4 into BUILD_DIR/tools (reused, no network);
#   3. as root where apt-get works: `apt-get install -y cmake pkg-config` (with `apt-get update`
#      and a retry when the first attempt fails: a fresh machine has empty package lists);
#   4. otherwise CMake from PyPI: `python3 -m pip install --target BUILD_DIR/tools/pypi cmake`
#      (or, where python3 has no pip module, a venv in BUILD_DIR/tools/venv); the directory of
#      the native binaries inside the wheel (…/cmake/data/bin) goes first on PATH.
# When neither `make` nor `ninja` is found, Ninja comes from PyPI the same way and
# CMAKE_GENERATOR=Ninja is exported. Everything it puts on PATH is exported, so later commands in
# the calling script use it. Set WTD_TOOLS_VERBOSE=1 to see pip's and apt-get's own output.
#
# Environment knobs (for tests of this file): WTD_TOOLS_PYTHON (the Python used for step 4,
# default python3 then python3.11), WTD_TOOLS_DIR (default BUILD_DIR/tools).

WTD_CMAKE_MIN_VERSION="3.16"

wtd_tools_log() { echo "[tools] $*"; }
wtd_tools_err() { echo "[tools] ERROR: $*" >&2; }

# Runs a command quietly unless WTD_TOOLS_VERBOSE=1; on failure prints its last output lines.
wtd_tools_quiet() {
    if [ "${WTD_TOOLS_VERBOSE:-0}" = 1 ]; then
        "$@"
        return
    fi
    local out rc=0
    out="$(mktemp)"
    "$@" >"$out" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        echo "[tools] '$*' failed (exit $rc); its last lines:" >&2
        tail -n 15 "$out" | sed 's/^/[tools]   /' >&2
    fi
    rm -f "$out"
    return "$rc"
}

# True when `cmake` and `ctest` on PATH are at least WTD_CMAKE_MIN_VERSION.
wtd_tools_cmake_ok() {
    command -v cmake >/dev/null 2>&1 && command -v ctest >/dev/null 2>&1 || return 1
    local v
    v="$(cmake --version 2>/dev/null | sed -n '1s/^cmake version \([0-9][0-9.]*\).*/\1/p')"
    [ -n "$v" ] || return 1
    [ "$(printf '%s\n%s\n' "$WTD_CMAKE_MIN_VERSION" "$v" | sort -V | head -n1)" = "$WTD_CMAKE_MIN_VERSION" ]
}

# Prints the directory holding the program $2 (cmake, ninja) of a PyPI install under $1, if any.
# Wheels keep the native binary in <pkg>/data/bin (cmake) or install it as a script (ninja:
# bin/ninja); a --target install's bin/ entry counts only when it is a native binary (a Python
# entry-point script there would need PYTHONPATH).
wtd_tools_find_pypi() {
    local f
    for f in "$1/pypi/$2/data/bin/$2" "$1"/venv/lib/python*/site-packages/"$2/data/bin/$2" \
        "$1/venv/bin/$2" "$1/pypi/bin/$2"; do
        [ -x "$f" ] && [ -f "$f" ] || continue
        if [ "$f" = "$1/pypi/bin/$2" ] && [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" != '177ELF' ]; then
            continue
        fi
        dirname "$f"
        return 0
    done
    return 1
}

wtd_tools_python() {
    local p
    for p in ${WTD_TOOLS_PYTHON:-} python3 python3.11; do
        if command -v "$p" >/dev/null 2>&1; then
            command -v "$p"
            return 0
        fi
    done
    return 1
}

# pip-installs the given requirements into $1/pypi (or a venv in $1/venv when python has no pip).
wtd_tools_pip_install() {
    local tools="$1" py
    shift
    py="$(wtd_tools_python)" || {
        wtd_tools_err "no python3 found, so CMake cannot come from PyPI; install CMake >= $WTD_CMAKE_MIN_VERSION (e.g. apt-get install cmake)"
        return 1
    }
    mkdir -p "$tools"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    if "$py" -m pip --version >/dev/null 2>&1; then
        wtd_tools_log "$py -m pip install --target $tools/pypi $*"
        wtd_tools_quiet "$py" -m pip install --upgrade --target "$tools/pypi" "$@" && return 0
        wtd_tools_log "pip --target failed; trying a venv in $tools/venv"
    else
        wtd_tools_log "$py has no pip module; using a venv in $tools/venv"
    fi
    if [ ! -x "$tools/venv/bin/pip" ]; then
        wtd_tools_log "$py -m venv $tools/venv"
        wtd_tools_quiet "$py" -m venv "$tools/venv" || {
            wtd_tools_err "could not create a venv with $py (Debian: apt-get install python3-venv), so CMake cannot come from PyPI"
            return 1
        }
    fi
    wtd_tools_log "$tools/venv/bin/pip install $*"
    wtd_tools_quiet "$tools/venv/bin/pip" install "$@"
}

wtd_tools_apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    export DEBIAN_FRONTEND=noninteractive
    wtd_tools_log "root and apt-get present: apt-get install -y cmake pkg-config"
    if wtd_tools_quiet apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends cmake pkg-config; then
        return 0
    fi
    wtd_tools_log "apt-get install failed; running apt-get update and retrying"
    wtd_tools_quiet apt-get -o DPkg::Lock::Timeout=600 update -q &&
        wtd_tools_quiet apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends cmake pkg-config
}

wtd_ensure_build_tools() {
    local build_dir="$1" tools bin
    tools="${WTD_TOOLS_DIR:-$build_dir/tools}"

    if ! command -v cargo >/dev/null 2>&1; then
        wtd_tools_err "cargo not found: install Rust (stable) with rustup, https://rustup.rs, then open a new shell"
        return 1
    fi
    if ! command -v cc >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1 && ! command -v clang >/dev/null 2>&1; then
        wtd_tools_err "no C compiler (cc, gcc or clang) found: install one (Debian: apt-get install gcc libc6-dev)"
        return 1
    fi

    if wtd_tools_cmake_ok; then
        wtd_tools_log "using $(cmake --version | head -n1) from $(command -v cmake)"
    elif bin="$(wtd_tools_find_pypi "$tools" cmake)" && PATH="$bin:$PATH" wtd_tools_cmake_ok; then
        export PATH="$bin:$PATH"
        wtd_tools_log "using $(cmake --version | head -n1) installed earlier from PyPI ($bin)"
    else
        if command -v cmake >/dev/null 2>&1; then
            wtd_tools_log "$(command -v cmake) is older than $WTD_CMAKE_MIN_VERSION (or has no ctest); getting a newer CMake"
        else
            wtd_tools_log "cmake not found on PATH; setting it up"
        fi
        if wtd_tools_apt_install && hash -r && wtd_tools_cmake_ok; then
            wtd_tools_log "installed $(cmake --version | head -n1) ($(command -v cmake)) with apt-get"
        else
            if [ "$(id -u)" != 0 ]; then
                wtd_tools_log "not root, so not using apt-get: installing CMake from PyPI into $tools"
            else
                wtd_tools_log "apt-get did not provide cmake: installing CMake from PyPI into $tools"
            fi
            wtd_tools_pip_install "$tools" "cmake>=$WTD_CMAKE_MIN_VERSION" || {
                wtd_tools_err "could not install CMake; install CMake >= $WTD_CMAKE_MIN_VERSION yourself and retry"
                return 1
            }
            bin="$(wtd_tools_find_pypi "$tools" cmake)" || {
                wtd_tools_err "pip reported success but no cmake binary is under $tools"
                return 1
            }
            export PATH="$bin:$PATH"
            hash -r
            wtd_tools_cmake_ok || {
                wtd_tools_err "$bin/cmake does not run or is older than $WTD_CMAKE_MIN_VERSION"
                return 1
            }
            wtd_tools_log "using $(cmake --version | head -n1) from PyPI ($bin)"
        fi
    fi

    # CMake's default generator on Linux needs make; without it use Ninja (from PyPI if needed).
    if [ -z "${CMAKE_GENERATOR:-}" ] && ! command -v make >/dev/null 2>&1; then
        if ! command -v ninja >/dev/null 2>&1; then
            if ! bin="$(wtd_tools_find_pypi "$tools" ninja)"; then
                wtd_tools_log "neither make nor ninja found: installing Ninja from PyPI into $tools"
                wtd_tools_pip_install "$tools" ninja && bin="$(wtd_tools_find_pypi "$tools" ninja)" || {
                    wtd_tools_err "no make and no ninja: install make (Debian: apt-get install make)"
                    return 1
                }
            fi
            export PATH="$bin:$PATH"
        fi
        export CMAKE_GENERATOR=Ninja
        wtd_tools_log "make not found: using Ninja ($(command -v ninja))"
    fi
    if ! command -v pkg-config >/dev/null 2>&1; then
        wtd_tools_log "note: pkg-config not found; only the consumer test's pkg-config check is skipped"
    fi
}

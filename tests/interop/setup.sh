#!/usr/bin/env bash
# Idempotent installer for wtd's interop peers. Everything lands in
# $WTD_INTEROP_CACHE (default: /work/main/build/interop-cache, i.e. <repo>/build/interop-cache).
#
#   py312/   venv (pyenv Python 3.12.1)  pywebtransport==0.21.1   (draft-15)
#   py311/   venv (Python 3.11)          pywebtransport==0.6.1 (draft-13) + aioquic==1.7.2 (draft-02)
#   node/    npm prefix with playwright-core (drives Debian's /usr/bin/chromium; never downloads a browser)
#   VERSIONS.txt  exact versions installed
#
# A second run only checks what is there and returns quickly.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
CACHE="${WTD_INTEROP_CACHE:-$REPO/build/interop-cache}"
mkdir -p "$CACHE"

PYWT021_VERSION=0.21.1
PYWT061_VERSION=0.6.1
AIOQUIC_VERSION=1.7.2

log() { echo "[setup] $*"; }

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

# --- Python 3.12.1 venv with pywebtransport 0.21.1 ---------------------------------------
py312_ok() {
  [ -x "$CACHE/py312/bin/python" ] &&
    "$CACHE/py312/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('pywebtransport') != '$PYWT021_VERSION')" 2>/dev/null
}
if py312_ok; then
  log "py312: pywebtransport $PYWT021_VERSION already installed"
else
  PY312=""
  if command -v pyenv >/dev/null 2>&1; then PY312="$(pyenv root)/versions/3.12.1/bin/python3"; fi
  [ -x "$PY312" ] || PY312="$HOME/.pyenv/versions/3.12.1/bin/python3"
  if [ ! -x "$PY312" ]; then
    echo "[setup] ERROR: pyenv Python 3.12.1 not found (pywebtransport $PYWT021_VERSION needs Python >= 3.12)" >&2
    exit 1
  fi
  log "py312: creating venv from $PY312 and installing pywebtransport==$PYWT021_VERSION"
  rm -rf "$CACHE/py312"
  "$PY312" -m venv "$CACHE/py312"
  "$CACHE/py312/bin/pip" install -q "pywebtransport==$PYWT021_VERSION"
  py312_ok || { echo "[setup] ERROR: pywebtransport $PYWT021_VERSION did not install" >&2; exit 1; }
fi

# --- Python 3.11 venv with pywebtransport 0.6.1 + aioquic 1.7.2 (they co-install) -------
py311_ok() {
  [ -x "$CACHE/py311/bin/python" ] &&
    "$CACHE/py311/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(not (m.version('pywebtransport') == '$PYWT061_VERSION' and m.version('aioquic') == '$AIOQUIC_VERSION' and m.version('cryptography')))" 2>/dev/null
}
if py311_ok; then
  log "py311: pywebtransport $PYWT061_VERSION + aioquic $AIOQUIC_VERSION already installed"
else
  PY311=""
  if command -v pyenv >/dev/null 2>&1; then
    for v in "$(pyenv root)"/versions/3.11*; do [ -x "$v/bin/python3" ] && PY311="$v/bin/python3"; done
  fi
  [ -n "$PY311" ] || PY311="$(command -v python3.11 || true)"
  [ -n "$PY311" ] || { echo "[setup] ERROR: no Python 3.11 found" >&2; exit 1; }
  log "py311: creating venv from $PY311 and installing pywebtransport==$PYWT061_VERSION aioquic==$AIOQUIC_VERSION"
  rm -rf "$CACHE/py311"
  "$PY311" -m venv "$CACHE/py311"
  "$CACHE/py311/bin/pip" install -q "pywebtransport==$PYWT061_VERSION" "aioquic==$AIOQUIC_VERSION"
  "$CACHE/py311/bin/pip" check
  py311_ok || { echo "[setup] ERROR: py311 packages did not install" >&2; exit 1; }
fi

# --- Chromium (Debian package) -------------------------------------------------------------
if [ -x /usr/bin/chromium ]; then
  log "chromium: /usr/bin/chromium present"
else
  if [ "$(id -u)" != 0 ]; then
    echo "[setup] ERROR: /usr/bin/chromium missing and not root; run: apt-get install -y chromium" >&2
    exit 1
  fi
  log "chromium: apt-get install -y chromium"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get -o DPkg::Lock::Timeout=600 install -y -q chromium; then
    log "chromium: install failed, running apt-get update and retrying"
    apt-get -o DPkg::Lock::Timeout=600 update -q
    apt-get -o DPkg::Lock::Timeout=600 install -y -q chromium
  fi
fi

# --- playwright-core (npm) -----------------------------------------------------------------
if [ -f "$CACHE/node/node_modules/playwright-core/package.json" ]; then
  log "node: playwright-core already installed"
else
  command -v npm >/dev/null || { echo "[setup] ERROR: npm not found" >&2; exit 1; }
  log "node: npm install --prefix $CACHE/node playwright-core"
  mkdir -p "$CACHE/node"
  npm install --silent --no-audit --no-fund --prefix "$CACHE/node" playwright-core
fi

# --- record versions -----------------------------------------------------------------------
{
  echo "python312: $("$CACHE/py312/bin/python" --version 2>&1)"
  echo "pywebtransport (py312): $("$CACHE/py312/bin/python" -c 'import importlib.metadata as m; print(m.version("pywebtransport"))')"
  echo "python311: $("$CACHE/py311/bin/python" --version 2>&1)"
  "$CACHE/py311/bin/python" -c '
import importlib.metadata as m
for p in ("pywebtransport", "aioquic", "cryptography"):
    print(f"{p} (py311): {m.version(p)}")'
  echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
  echo "node: $(node --version)"
  echo "playwright-core: $(node -p "require('$CACHE/node/node_modules/playwright-core/package.json').version")"
} > "$CACHE/VERSIONS.txt"
sed 's/^/[setup] version /' "$CACHE/VERSIONS.txt"
log "done (cache: $CACHE)"

#!/usr/bin/env bash
# Sets up everything the demo and the tests need, from nothing, idempotently:
# Debian's chromium, a Python venv with the packages in editable mode,
# npm packages and js-client's dist/, and the Go modules of the interop programs (built into build/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${VENV:-$ROOT/.venv}

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# 1. Debian packages: real Chromium for Playwright (its own browser download cannot work here).
#    (Redis joins this list with the multi-process gateway, which is not built yet.)
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Python: a venv with both packages editable and the dev tools.
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
stamp="$VENV/.installed"
want=$(cat pyproject.toml python-sdk/pyproject.toml gateway/pyproject.toml web-demo/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "installing Python packages"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e ./python-sdk -e ./gateway -e './web-demo' -e '.[dev]'
    echo "$want" > "$stamp"
fi

# 3. npm workspaces (js-client, web-demo).
if [ -f package-lock.json ]; then
    if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        log "installing npm packages"
        npm ci --no-audit --no-fund --loglevel=error
    fi
else
    npm install --no-audit --no-fund --loglevel=error
fi

# 4. js-client's dist/ (what `import '@glueberry/client'` loads in Node, and the browser bundle),
#    rebuilt when a source is newer than it.
if [ ! -f js-client/dist/index.js ] || [ -n "$(find js-client/src js-client/scripts js-client/package.json -newer js-client/dist/index.js -print -quit)" ]; then
    log "building js-client (dist/)"
    npm run --silent -w js-client build
fi

# 5. Go interop programs, against the real go-libp2p and glueberry modules from the Go module proxy.
if [ -f tests/interop/go.mod ]; then
    mkdir -p build
    log "building Go interop programs"
    (cd tests/interop && go build -o "$ROOT/build/" ./cmd/...)
fi
log "ready"

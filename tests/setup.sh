#!/usr/bin/env bash
# Installs what the test suite needs on a Debian bookworm machine, idempotently and quickly when all is there:
# system packages (apt, root), the Python venv of the test peers ($SAMTAL_CACHE/venv) and the browser tests'
# npm packages (tests/browser). It exports nothing: tests/run sets the test variables.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${SAMTAL_CACHE:-$HOME/.cache/samtal}"
export DEBIAN_FRONTEND=noninteractive

# --- system packages ---------------------------------------------------------------------------
packages=(cmake libclang-dev pkg-config chromium chromium-driver espeak-ng sox python3 python3-venv iproute2 nftables coturn firefox-esr postgresql nats-server)
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || { echo "setup.sh: missing packages ${missing[*]}; run as root to install them" >&2; exit 1; }
        sudo="sudo"
    fi
    echo "setup.sh: installing ${missing[*]}" >&2
    # Another process may hold the dpkg lock (a parallel install): wait for it rather than fail.
    apt_opts=(-y -o DPkg::Lock::Timeout=900)
    $sudo apt-get "${apt_opts[@]}" update
    $sudo apt-get "${apt_opts[@]}" install "${missing[@]}"
fi

command -v cargo >/dev/null 2>&1 || { echo "setup.sh: cargo not found; install a Rust toolchain (rustup)" >&2; exit 1; }

# --- Python venvs: the test peers (aiortc, export parsers) and Synapse for the Matrix tests ------------
# Each is reinstalled only when its requirements file changes (the file's hash is kept in the venv).
python_venv() { # python_venv REQUIREMENTS VENV
    local requirements="$1" venv="$2" stamp="$2/.samtal-requirements.sha256" want python="python3"
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
        echo "setup.sh: creating Python venv in $venv" >&2
        mkdir -p "$cache"
        [[ -x /usr/bin/python3 ]] && python=/usr/bin/python3
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --quiet -r "$requirements"
        echo "$want" >"$stamp"
    fi
}
python_venv "$repo/tests/peers/requirements.txt" "$cache/venv"
python_venv "$repo/tests/peers/synapse-requirements.txt" "$cache/synapse-venv"

# --- npm packages of the browser tests -----------------------------------------------------------
browser="$repo/tests/browser"
if [[ -f "$browser/package.json" && -f "$browser/package-lock.json" ]]; then
    npm_stamp="$browser/node_modules/.samtal-lock.sha256"
    want="$(sha256sum "$browser/package-lock.json" | cut -d' ' -f1)"
    if [[ "$(cat "$npm_stamp" 2>/dev/null)" != "$want" ]]; then
        echo "setup.sh: npm ci in tests/browser" >&2
        # playwright-core drives the system Chromium, puppeteer-core the system Firefox ESR; never
        # download browsers.
        (cd "$browser" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund)
        echo "$want" >"$npm_stamp"
    fi
else
    echo "setup.sh: tests/browser has no package.json/package-lock.json yet; skipping npm ci" >&2
fi

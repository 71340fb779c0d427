#!/usr/bin/env bash
# Installs the real stdio MCP servers that examples/stdio-proxy's tests wrap (idempotent, pinned):
#   - PyPI mcp-server-time      into a venv at $MCP_PEERS_DIR/venv  (python3 -m venv)
#   - npm  @modelcontextprotocol/server-memory into $MCP_PEERS_DIR/npm (the machine's node, >= 18)
# MCP_PEERS_DIR defaults to $HOME/.cache/mcp-authd. The tests look there (same variable) and fail,
# naming this script, when a peer is missing.
set -euo pipefail

MCP_TIME_VERSION=2026.10.19
MCP_PY_SDK_VERSION=2.3.0   # the Python SDK it runs on (knows both protocol eras)
MCP_MEMORY_VERSION=2026.8.31

dir="${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}"
venv="$dir/venv"
npm_prefix="$dir/npm"
mkdir -p "$dir"

# --- mcp-server-time (PyPI) ---
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -m pip show mcp-server-time 2>/dev/null | grep -qx "Version: $MCP_TIME_VERSION" \
    || ! "$venv/bin/python" -m pip show mcp 2>/dev/null | grep -qx "Version: $MCP_PY_SDK_VERSION"; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "mcp-server-time==$MCP_TIME_VERSION" "mcp==$MCP_PY_SDK_VERSION"
fi
test -x "$venv/bin/mcp-server-time"
echo "mcp-server-time $MCP_TIME_VERSION: $venv/bin/mcp-server-time"

# --- @modelcontextprotocol/server-memory (npm) ---
command -v node >/dev/null || { echo "node is required for @modelcontextprotocol/server-memory" >&2; exit 1; }
installed=""
if [ -f "$npm_prefix/node_modules/@modelcontextprotocol/server-memory/package.json" ]; then
    installed=$(node -p "require('$npm_prefix/node_modules/@modelcontextprotocol/server-memory/package.json').version")
fi
if [ "$installed" != "$MCP_MEMORY_VERSION" ]; then
    mkdir -p "$npm_prefix"
    npm install --silent --no-audit --no-fund --prefix "$npm_prefix" \
        "@modelcontextprotocol/server-memory@$MCP_MEMORY_VERSION"
fi
test -x "$npm_prefix/node_modules/.bin/mcp-server-memory"
echo "@modelcontextprotocol/server-memory $MCP_MEMORY_VERSION: $npm_prefix/node_modules/.bin/mcp-server-memory (node $(node --version))"

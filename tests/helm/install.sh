#!/usr/bin/env bash
# Installs what tests/helm/check.py needs (idempotent; versions pinned in requirements.txt) into a
# venv at ${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}/helm-venv and prints its python.
#   PyPI helm-python-sdk   the Helm v4 SDK (lint, template) as a shared library: no helm binary
#   PyPI kubernetes-validate  the Kubernetes OpenAPI schemas, offline
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}"
venv="$dir/helm-venv"
mkdir -p "$dir"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
stamp="$venv/.mcp-authd-helm.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
    echo "$want" >"$stamp"
fi
"$venv/bin/python" -c 'import helm_python, kubernetes_validate' >&2 \
    || { echo "the Helm SDK or kubernetes-validate did not install into $venv" >&2; exit 1; }
echo "$venv/bin/python"

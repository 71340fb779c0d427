#!/usr/bin/env bash
# Installs what `make helm-lint` (tests/helm/check.py) needs, idempotent, versions pinned, into a
# venv at ${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}/helm-venv:
#   PyPI helm-python-sdk 0.2.2      the Helm v4 SDK (libhelm_c, ctypes): lint and render offline
#   PyPI kubernetes-validate 1.37.0 JSON schemas of the Kubernetes API (1.x to 1.37)
# No helm binary and no cluster are needed. Prints the venv's python on standard output (the
# versions on standard error).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}"
venv="$dir/helm-venv"
mkdir -p "$dir"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "python3 -m venv failed: install python3-venv" >&2; exit 1; }
fi
stamp="$venv/.mcp-authd-helm.sha256"
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
    echo "$want" >"$stamp"
fi
"$venv/bin/python" - >&2 <<'PY'
import helm_python, kubernetes_validate.utils as kv
print(f"Helm SDK {helm_python.helm_sdk_version()} (helm-python-sdk {helm_python.__version__}), "
      f"kubernetes-validate schemas up to {kv.latest_version()}")
PY
echo "$venv/bin/python"

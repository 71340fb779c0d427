#!/usr/bin/env bash
# Tool-call round trip through mcp-stdio-proxy vs the same call direct on stdio, on this machine:
# release build, loopback only, 1 and 32 concurrent sessions (one stdio server child each), with
# the proxy's fixture server (`echo`) and, when installed by examples/stdio-proxy/tests/install-peers.sh,
# PyPI mcp-server-time (`get_current_time`). The load client is bench/load (mcp-bench, rmcp's client).
# Prints markdown tables; the figures also go to bench/results-stdio-proxy.json.
# About 1.5 minutes after the build on 2 cores; the client, the proxy and the servers share the CPUs.
#   bench/stdio-proxy.sh
#   SESSIONS=1,8,32 CALLS=500 MODES=direct,proxy bench/stdio-proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/mcp-authd/target}"
export CARGO_TARGET_DIR
cargo build --release --locked -q -p mcp-bench -p mcp-stdio-proxy
BIN="$CARGO_TARGET_DIR/release"

SESSIONS=${SESSIONS:-1,32}
CALLS=${CALLS:-2000}           # measured calls per session (fixture)
WARMUP=${WARMUP:-100}          # unmeasured calls per session first
TIME_CALLS=${TIME_CALLS:-200}  # mcp-server-time is a Python process: fewer calls per session
TIME_WARMUP=${TIME_WARMUP:-20}
TIME_MODES=${TIME_MODES:-direct,proxy}  # each mode starts 32 Python processes (~10 s on 2 cores)
# proxy-keepalive: the proxy again, with an HTTP client that reuses connections (rmcp's default
# client opens one per POST), to show how much of the cost is connection setup.
MODES=${MODES:-direct,proxy,proxy-keepalive}
JSON=${JSON:-bench/results-stdio-proxy.json}

time_args=()
time_server="${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}/venv/bin/mcp-server-time"
if [ -x "$time_server" ]; then
  time_args=(--time-server "$time_server" --time-calls "$TIME_CALLS" --time-warmup "$TIME_WARMUP" --time-modes "$TIME_MODES")
else
  echo "note: $time_server not found, measuring the fixture only (install it: examples/stdio-proxy/tests/install-peers.sh)" >&2
fi

echo "mcp-stdio-proxy vs direct stdio: $(nproc) CPUs, sessions $SESSIONS, $CALLS calls/session (+$WARMUP warm-up)" >&2
"$BIN/mcp-bench" stdio-proxy \
  --fixture "$BIN/mcp-stdio-fixture" --proxy "$BIN/mcp-stdio-proxy" \
  --sessions "$SESSIONS" --calls "$CALLS" --warmup "$WARMUP" --modes "$MODES" \
  "${time_args[@]}" --json "$JSON"

#!/usr/bin/env bash
# The Python "MCP OAuth Gateway"'s /verify measured the way bench/verify.sh measures mcp-authd's,
# for the comparison in BENCHMARKS.md. Optional (not part of `make bench`); loopback only.
# It installs the gateway's authorization server from PyPI (mcp-oauth-dynamicclient, at the
# versions in bench/python-gateway/requirements.txt) in a venv under ~/.cache/mcp-authd, starts it
# as its CLI does (one uvicorn process) with a redis-server of its own and an RS256 key, mints
# tokens with its own code (bench/python-gateway/mint.py: signed, jti stored in Redis, as its
# /token does), and measures with wrk at 32 connections, 10 s after a 3 s warm-up: its metadata
# endpoint (it has no /health) as the ceiling, /verify valid, bad signature, no token, expired,
# 10,000 tokens in rotation, then with the server pinned to core 0 and wrk to core 1; RSS idle
# and after each case; Redis commands per 10,000 /verify. Figures: bench/results-python-gateway.json.
#   bench/python-gateway.sh
#   TOKENS=1000 DURATION=5 bench/python-gateway.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/mcp-authd/target}"
export CARGO_TARGET_DIR
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
missing=""
command -v wrk >/dev/null || missing="$missing wrk"
command -v redis-server >/dev/null || missing="$missing redis-server"
command -v taskset >/dev/null || missing="$missing util-linux"
command -v openssl >/dev/null || missing="$missing openssl"
if [ -n "$missing" ]; then
  echo "installing:$missing" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
cargo build --release --locked -q -p mcp-bench
BENCH="$CARGO_TARGET_DIR/release/mcp-bench"

VENV=${MCP_PEERS_DIR:-$HOME/.cache/mcp-authd}/python-gateway
REQS=bench/python-gateway/requirements.txt
if ! cmp -s "$REQS" "$VENV/requirements.txt" 2>/dev/null; then
  echo "installing the Python gateway (mcp-oauth-dynamicclient) into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS"
  cp "$REQS" "$VENV/requirements.txt"
fi
PY="$VENV/bin/python"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-32}
TOKENS=${TOKENS:-10000}
JSON=${JSON:-bench/results-python-gateway.json}
PINNED=${PINNED:-1}
case "$(nproc)" in 1) PINNED=0 ;; esac
store=python-gateway

work=$(mktemp -d)
rows="$work/rows.jsonl"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
. bench/lib.sh

port=$(free_port); rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
wait_tcp "$rport"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
# The settings the gateway requires (it has no defaults); GitHub is never called here.
export GITHUB_CLIENT_ID=bench GITHUB_CLIENT_SECRET=bench JWT_SECRET=unused-with-rs256 JWT_ALGORITHM=RS256
JWT_PRIVATE_KEY_B64=$(base64 -w0 "$work/key.pem"); export JWT_PRIVATE_KEY_B64
export BASE_DOMAIN=example.com REDIS_URL="redis://127.0.0.1:$rport/0" REDIS_PASSWORD=
export ACCESS_TOKEN_LIFETIME=3600 REFRESH_TOKEN_LIFETIME=86400 SESSION_TIMEOUT=3600 CLIENT_LIFETIME=0
export ALLOWED_GITHUB_USERS='*' MCP_PROTOCOL_VERSION=2025-06-18 LOG_LEVEL=INFO

start_server() { # [taskset prefix...]
  "$@" "$PY" -W ignore -m mcp_oauth_dynamicclient --host 127.0.0.1 --port "$port" >>"$work/server.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  wait_http "$port" /.well-known/oauth-authorization-server "$work/server.log"
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }

echo "== Python gateway (mcp-oauth-dynamicclient $("$VENV/bin/pip" show mcp-oauth-dynamicclient | awk '/^Version/ {print $2}')) on :$port, Redis :$rport" >&2
start_server
sleep 1
"$BENCH" authd rss --store "$store" --pid "$server_pid" --when "idle, after start" --rows "$rows"
"$PY" bench/python-gateway/mint.py 1 > "$work/valid.txt" 2>>"$work/mint.log"
valid=$(head -1 "$work/valid.txt")
expired=$("$PY" bench/python-gateway/mint.py 1 1 2>>"$work/mint.log")
at=$(( ${#valid} - 20 )); c=${valid:$at:1}; [ "$c" = A ] && n=B || n=A
badsig="${valid:0:$at}$n${valid:$((at + 1))}"
lua_static "$valid" > "$work/valid.lua"
lua_static "$badsig" > "$work/badsig.lua"
lua_static "$expired" > "$work/expired.lua"
lua_static "" > "$work/none.lua"
lua_rotation > "$work/rotation.lua"
echo "minting $TOKENS tokens with the gateway's code" >&2
"$PY" bench/python-gateway/mint.py "$TOKENS" > "$work/tokens.txt" 2>>"$work/mint.log"

expect_status /.well-known/oauth-authorization-server "" 200 metadata
wrk_case metadata 200 /.well-known/oauth-authorization-server "$work/none.lua"
expect_status /verify "$valid" 200 "valid token"
wrk_case verify-valid 200 /verify "$work/valid.lua"
expect_status /verify "$badsig" 401 "bad signature"
wrk_case verify-badsig 401 /verify "$work/badsig.lua"
expect_status /verify "" 401 "no token"
wrk_case verify-none 401 /verify "$work/none.lua"
sleep 1
expect_status /verify "$expired" 401 "expired token"
wrk_case verify-expired 401 /verify "$work/expired.lua"
expect_status /verify "$(head -1 "$work/tokens.txt")" 200 "a minted token"
wrk_case verify-10k-tokens 200 /verify "$work/rotation.lua" "$work/tokens.txt"
"$BENCH" authd redis-commands --store "$store" --case verify-valid --rows "$rows" --redis "127.0.0.1:$rport" \
  --base "http://127.0.0.1:$port" --resource https://mcp.example.com/mcp --token-file "$work/valid.txt" \
  --requests 10000 --concurrency "$CONNS"
stop_server

if [ "$PINNED" = 1 ]; then
  echo "== pinned: the gateway on core 0, wrk on core 1" >&2
  start_server taskset -c 0
  PIN_WRK=1 THREADS=1 wrk_case verify-valid-pinned 200 /verify "$work/valid.lua"
  stop_server
fi

"$BENCH" authd report --no-targets --rows "$rows" --json "$JSON" \
  --meta "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --meta "server=mcp-oauth-dynamicclient $("$VENV/bin/pip" show mcp-oauth-dynamicclient | awk '/^Version/ {print $2}') (PyPI), one uvicorn process, $("$PY" --version)" \
  --meta "wrk=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" \
  --meta "redis=$(redis-server --version | awk '{print $3}' | sed 's/^v=//')" \
  --meta "connections=$CONNS" --meta "warmup_secs=$WARMUP" --meta "duration_secs=$DURATION" \
  --meta "rotation_tokens=$TOKENS"

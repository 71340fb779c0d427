#!/usr/bin/env bash
# mcp-authd under load on this machine (issue 7), loopback only. For each store (embedded, then
# Redis with a redis-server of its own on a free port and in its own directory) it starts the
# release mcp-authd with the ext_authz gRPC port on, gets real tokens (`token mint`, and through
# the real flow: register, authorize with PKCE, /login, code exchange, refresh) and measures, each
# at 32 connections for 10 s after a 3 s warm-up:
#   wrk:       /health (the ceiling), /verify with a valid token, a bad signature, no token, an
#              expired token, 10,000 distinct valid tokens in rotation (Traefik's X-Forwarded-*)
#   mcp-bench: ext_authz gRPC Check (valid token), /token refresh grants (chained per login),
#              /register; Redis commands per 10,000 /verify (INFO commandstats)
#   then again with the server pinned to core 0 and wrk to core 1 (taskset): valid and bad
#   signature /verify, for p99.
# mcp-authd's VmRSS is read idle and after every case (the server is restarted after the logins of
# the refresh case, before the rotation, so the rotation's RSS is the token cache's). One table is printed; the figures go to
# bench/results.json (machine, date, commit, every case). About 5 minutes after the build.
#   bench/verify.sh
#   STORES=embedded DURATION=5 WARMUP=1 bench/verify.sh      # quicker, one store
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/mcp-authd/target}"
export CARGO_TARGET_DIR
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
missing=""
command -v wrk >/dev/null || missing="$missing wrk"
command -v redis-server >/dev/null || missing="$missing redis-server"
command -v taskset >/dev/null || missing="$missing util-linux"
command -v curl >/dev/null || missing="$missing curl"
if [ -n "$missing" ]; then
  echo "installing:$missing" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
cargo build --release --locked -q -p mcp-authd -p mcp-bench
BIN="$CARGO_TARGET_DIR/release/mcp-authd"
BENCH="$CARGO_TARGET_DIR/release/mcp-bench"

STORES=${STORES:-"embedded redis"}
DURATION=${DURATION:-10}   # seconds measured per case
WARMUP=${WARMUP:-3}        # seconds of load before each, not counted
CONNS=${CONNS:-32}
TOKENS=${TOKENS:-10000}    # distinct tokens in the rotation case
JSON=${JSON:-bench/results.json}
PINNED=${PINNED:-1}        # 0: skip the pinned runs
export RUST_LOG=${RUST_LOG:-info}   # the production default: audit events of /token and /register are logged
RESOURCE=https://mcp.example.com/mcp
USER_NAME=bench
PASSWORD="bench-$RANDOM$RANDOM-password"
case "$(nproc)" in 1) PINNED=0; echo "one CPU: no pinned runs" >&2 ;; esac

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

start_server() { # [taskset prefix...]
  "$@" "$BIN" --config "$dir/mcp-authd.toml" serve >>"$dir/server.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  wait_http "$port" /health "$dir/server.log"
  wait_tcp "$gport"
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }

hash=$(printf '%s\n' "$PASSWORD" | "$BIN" hash-password 2>/dev/null)
started=$(date +%s)
for store in $STORES; do
  port=$(free_port); gport=$(free_port)
  dir="$work/$store"; mkdir -p "$dir"
  cat > "$dir/mcp-authd.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
issuer = "http://127.0.0.1:$port"
data_dir = "$dir/data"

[verify]
grpc_bind = "127.0.0.1:$gport"

# The load comes from one address: limits would measure 429s.
[rate_limit]
enabled = false

[[resources]]
url = "$RESOURCE"

[[local.users]]
username = "$USER_NAME"
password_hash = "$hash"
email = "bench@example.com"
TOML
  redis_args=()
  if [ "$store" = redis ]; then
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
    pids+=($!)
    wait_tcp "$rport"
    printf '\n[store]\ntype = "redis"\nredis_url = "redis://127.0.0.1:%s"\n' "$rport" >> "$dir/mcp-authd.toml"
  elif [ "$store" != embedded ]; then
    echo "unknown store $store (embedded, redis)" >&2; exit 1
  fi

  echo "== $store: mcp-authd on :$port (gRPC :$gport)" >&2
  start_server
  sleep 1
  "$BENCH" authd rss --store "$store" --pid "$server_pid" --when "idle, after start" --rows "$rows"

  mint() { "$BIN" --config "$dir/mcp-authd.toml" token mint --sub bench-user --aud "$RESOURCE" --name bench --email bench@example.com "$@" 2>/dev/null; }
  valid=$(mint); expired=$(mint --ttl 1)
  printf '%s\n' "$valid" > "$dir/valid.txt"
  # Bad signature: one character in the middle of the signature changed (the last one may only
  # carry padding bits).
  at=$(( ${#valid} - 20 )); c=${valid:$at:1}; [ "$c" = A ] && n=B || n=A
  badsig="${valid:0:$at}$n${valid:$((at + 1))}"
  lua_static "$valid" > "$dir/valid.lua"
  lua_static "$badsig" > "$dir/badsig.lua"
  lua_static "$expired" > "$dir/expired.lua"
  lua_static "" > "$dir/none.lua"
  lua_rotation > "$dir/rotation.lua"

  expect_status /health "" 200 health
  wrk_case health 200 /health "$dir/none.lua"
  expect_status /verify "$valid" 200 "valid token"
  wrk_case verify-valid 200 /verify "$dir/valid.lua"
  expect_status /verify "$badsig" 401 "bad signature"
  wrk_case verify-badsig 401 /verify "$dir/badsig.lua"
  expect_status /verify "" 401 "no token"
  wrk_case verify-none 401 /verify "$dir/none.lua"
  expect_status /verify "$expired" 401 "expired token"
  wrk_case verify-expired 401 /verify "$dir/expired.lua"

  "$BENCH" authd grpc --store "$store" --case grpc-check-valid --pid "$server_pid" --rows "$rows" \
    --addr "127.0.0.1:$gport" --resource "$RESOURCE" --token-file "$dir/valid.txt" \
    --connections "$CONNS" --warmup-secs "$WARMUP" --duration-secs "$DURATION"
  # Refresh grants; the access tokens they return are the rotation's distinct tokens.
  "$BENCH" authd refresh --store "$store" --case token-refresh --pid "$server_pid" --rows "$rows" \
    --base "http://127.0.0.1:$port" --resource "$RESOURCE" --user "$USER_NAME" --password "$PASSWORD" \
    --tokens-out "$dir/tokens.txt" --tokens "$TOKENS" \
    --connections "$CONNS" --warmup-secs "$WARMUP" --duration-secs "$DURATION"
  # The 32 logins ran argon2id (19 MiB each) at once, and the allocator keeps that memory: restart,
  # so that the rotation's RSS is the token cache's and not the logins' (the refresh row keeps
  # the RSS they left; the tokens stay valid across the restart).
  stop_server
  start_server
  sleep 1
  "$BENCH" authd rss --store "$store" --pid "$server_pid" --when "idle, restarted after the logins" --rows "$rows"
  expect_status /verify "$(head -1 "$dir/tokens.txt")" 200 "a token from a refresh grant"
  wrk_case verify-10k-tokens 200 /verify "$dir/rotation.lua" "$dir/tokens.txt"
  if [ "$store" = redis ]; then
    for c in verify-valid verify-10k-tokens; do
      f="$dir/valid.txt"; [ "$c" = verify-10k-tokens ] && f="$dir/tokens.txt"
      "$BENCH" authd redis-commands --store "$store" --case "$c" --rows "$rows" --redis "127.0.0.1:$rport" \
        --base "http://127.0.0.1:$port" --resource "$RESOURCE" --token-file "$f" --requests 10000 --concurrency "$CONNS"
    done
  fi
  "$BENCH" authd register --store "$store" --case register --pid "$server_pid" --rows "$rows" \
    --base "http://127.0.0.1:$port" --connections "$CONNS" --warmup-secs "$WARMUP" --duration-secs "$DURATION"
  stop_server

  if [ "$PINNED" = 1 ]; then
    echo "== $store: pinned, mcp-authd on core 0, wrk on core 1" >&2
    start_server taskset -c 0
    PIN_WRK=1 THREADS=1 wrk_case verify-valid-pinned 200 /verify "$dir/valid.lua"
    PIN_WRK=1 THREADS=1 wrk_case verify-badsig-pinned 401 /verify "$dir/badsig.lua"
    stop_server
  fi
done

echo >&2
echo "mcp-authd: wrk -c$CONNS (2 threads; pinned: 1), ${WARMUP} s warm-up + ${DURATION} s per case, $(nproc) CPUs shared by server and load generator; $(( $(date +%s) - started )) s" >&2
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit+uncommitted changes"
"$BENCH" authd report --rows "$rows" --json "$JSON" \
  --meta "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  --meta "git_commit=$commit" \
  --meta "rustc=$(rustc --version)" \
  --meta "wrk=$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)" \
  --meta "redis=$(redis-server --version | awk '{print $3}' | sed 's/^v=//')" \
  --meta "connections=$CONNS" --meta "warmup_secs=$WARMUP" --meta "duration_secs=$DURATION" \
  --meta "rust_log=$RUST_LOG" --meta "rotation_tokens=$TOKENS" \
  --meta "wrk_threads=2 (pinned: 1 on core 1, server on core 0)"

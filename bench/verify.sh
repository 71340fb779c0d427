#!/usr/bin/env bash
# /verify throughput on this machine: release build, loopback only, wrk at 32 connections
# for 10 s after a 3 s warm-up, with the embedded store and then with Redis.
#   bench/verify.sh            # both stores
#   STORES=embedded bench/verify.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/mcp-authd/target}"
export CARGO_TARGET_DIR
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
for tool in wrk redis-server; do
  command -v "$tool" >/dev/null || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk redis-server >/dev/null; }
done
cargo build --release --locked -q
BIN="$CARGO_TARGET_DIR/release/mcp-authd"
STORES=${STORES:-"embedded redis"}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
RESOURCE=https://mcp.example.com/mcp

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "server on :$1 did not start" >&2; exit 1; }

# wrk script: fixed headers, optional Authorization.
lua() {
  printf '%s\n' 'wrk.method = "GET"' \
    'wrk.headers["X-Forwarded-Method"] = "POST"' \
    'wrk.headers["X-Forwarded-Proto"] = "https"' \
    'wrk.headers["X-Forwarded-Host"] = "mcp.example.com"' \
    'wrk.headers["X-Forwarded-Uri"] = "/mcp"'
  if [ -n "$1" ]; then printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$1"; fi
}

run() { # name url lua-file
  wrk -t2 -c"$CONNS" -d3s -s "$3" "$2" >/dev/null 2>&1 || true
  local out; out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$3" "$2")
  local rps p50 p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  printf '| %-9s | %-26s | %10s | %8s | %8s | %9s |\n' "$store" "$1" "$rps" "$p50" "$p99" "${non2xx:-0}"
}

printf '| %-9s | %-26s | %10s | %8s | %8s | %9s |\n' store case req/s p50 p99 non-2xx
printf '|%s|%s|%s|%s|%s|%s|\n' ----------- ---------------------------- ------------ ---------- ---------- -----------
for store in $STORES; do
  port=$(free_port)
  dir="$work/$store"; mkdir -p "$dir"
  cat > "$dir/mcp-authd.toml" <<TOML
[server]
bind = "127.0.0.1:$port"
issuer = "http://127.0.0.1:$port"
data_dir = "$dir/data"
[[resources]]
url = "$RESOURCE"
TOML
  if [ "$store" = redis ]; then
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" --daemonize no >"$dir/redis.log" 2>&1 &
    pids+=($!)
    printf '[store]\ntype = "redis"\nredis_url = "redis://127.0.0.1:%s"\n' "$rport" >> "$dir/mcp-authd.toml"
    sleep 0.5
  fi
  RUST_LOG=warn "$BIN" --config "$dir/mcp-authd.toml" serve >"$dir/server.log" 2>&1 &
  pids+=($!)
  wait_port "$port"
  token=$("$BIN" --config "$dir/mcp-authd.toml" token mint --sub bench --aud "$RESOURCE" --name bench 2>/dev/null)
  lua "$token" > "$dir/valid.lua"
  lua "${token%?}x" > "$dir/badsig.lua"
  lua "" > "$dir/none.lua"
  run "/verify valid token" "http://127.0.0.1:$port/verify" "$dir/valid.lua"
  run "/verify bad signature" "http://127.0.0.1:$port/verify" "$dir/badsig.lua"
  run "/verify no token" "http://127.0.0.1:$port/verify" "$dir/none.lua"
  run "/health (ceiling)" "http://127.0.0.1:$port/health" "$dir/none.lua"
  rss=$(ps -o rss= -p "${pids[-1]}" | tr -d ' ')
  printf '| %-9s | %-26s | %10s | %8s | %8s | %9s |\n' "$store" "RSS after load (KiB)" "$rss" "" "" ""
  kill "${pids[-1]}"
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); wrk -t2 -c$CONNS -d$DURATION on the same machine"

# Shell functions shared by bench/verify.sh and bench/python-gateway.sh (sourced, not run).
# They read: $port (the server under load), $store, $server_pid, $rows, $BENCH, $CONNS, $WARMUP,
# $DURATION, and optionally $PIN_WRK (a core for wrk) and $THREADS (wrk threads, default 2).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_tcp() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on :$1" >&2; exit 1; }
wait_http() { # port path log: until GET path answers 2xx (15 s at most)
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$1$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "the server on :$1 did not start:" >&2; tail -20 "$3" >&2; exit 1
}

# The request Traefik's forwardAuth makes for `POST https://mcp.example.com/mcp`.
HEADERS=("X-Forwarded-Method: POST" "X-Forwarded-Proto: https" "X-Forwarded-Host: mcp.example.com" "X-Forwarded-Uri: /mcp")
lua_static() { # token-or-empty
  printf '%s\n' 'wrk.method = "GET"' \
    'wrk.headers["X-Forwarded-Method"] = "POST"' \
    'wrk.headers["X-Forwarded-Proto"] = "https"' \
    'wrk.headers["X-Forwarded-Host"] = "mcp.example.com"' \
    'wrk.headers["X-Forwarded-Uri"] = "/mcp"'
  if [ -n "$1" ]; then printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$1"; fi
}
# Every request of the file's tokens built once per thread; request() hands them out in turn
# (the threads start half the file apart), so the per-request cost on wrk's side is a table look-up.
lua_rotation() {
  cat <<'LUA'
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
function init(args)
  reqs = {}
  for line in io.lines(args[1]) do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format("GET", "/verify", {
        ["Host"] = wrk.headers["Host"], ["Authorization"] = "Bearer " .. line,
        ["X-Forwarded-Method"] = "POST", ["X-Forwarded-Proto"] = "https",
        ["X-Forwarded-Host"] = "mcp.example.com", ["X-Forwarded-Uri"] = "/mcp" })
    end
  end
  i = (id or 0) * math.floor(#reqs / 2)
end
function request() i = i % #reqs + 1; return reqs[i] end
LUA
}

# The status one request gets, for the check before each case.
status_of() { # path token-or-empty
  local auth=()
  [ -n "$2" ] && auth=(-H "Authorization: Bearer $2")
  local h=(); for x in "${HEADERS[@]}"; do h+=(-H "$x"); done
  curl -s -o /dev/null -w '%{http_code}' "${h[@]}" "${auth[@]}" "http://127.0.0.1:$port$1"
}
expect_status() { # path token expected what
  local got; got=$(status_of "$1" "$2")
  [ "$got" = "$3" ] || { echo "$4: expected $3, got $got: the case would measure the wrong thing" >&2; exit 1; }
}

wrk_case() { # case expect path lua [lua-arg]; PIN_WRK / THREADS from the caller
  local case=$1 expect=$2 path=$3 lua=$4; shift 4
  local pin=() flags=()
  [ -n "${PIN_WRK:-}" ] && { pin=(taskset -c "$PIN_WRK"); flags=(--pinned); }
  local url="http://127.0.0.1:$port$path" args=()
  [ $# -gt 0 ] && args=(-- "$@")
  "${pin[@]}" wrk -t"${THREADS:-2}" -c"$CONNS" -d"${WARMUP}s" -s "$lua" "$url" "${args[@]}" >/dev/null 2>&1 || true
  "${pin[@]}" wrk -t"${THREADS:-2}" -c"$CONNS" -d"${DURATION}s" --latency -s "$lua" "$url" "${args[@]}" \
    | "$BENCH" authd wrk --store "$store" --case "$case" --expect "$expect" --pid "$server_pid" --rows "$rows" "${flags[@]}"
}


# Shared by the benchmarks that load `txflow serve` with wrk (sourced, not
# run): bench-serve.sh and bench-model.sh.

# ensure_wrk: installs wrk (Debian package) when missing.
ensure_wrk() {
  if ! command -v wrk >/dev/null; then
    echo "installing wrk (Debian package)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  fi
}

# start_serve TXFLOW LOG [ARGS...]: `TXFLOW serve ARGS` on a free loopback
# port, logging to LOG; sets serve_pid and serve_url once /ready answers.
start_serve() {
  local txflow=$1 log=$2 port
  shift 2
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$txflow" serve --listen "127.0.0.1:$port" --log-format json "$@" >"$log" 2>&1 &
  serve_pid=$!
  serve_url="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do
    curl -sf "$serve_url/ready" >/dev/null && return 0
    sleep 0.1
  done
  echo "txflow serve did not answer on $serve_url (log: $log)" >&2
  return 1
}

# wrk_predict URL BODY WORK SECONDS: warms up for 2 s, then POSTs the JSON
# file BODY to URL/predict for SECONDS (1 thread, 8 connections) and leaves
# wrk's --latency output in WORK/wrk.txt.
wrk_predict() {
  local url=$1 body=$2 work=$3 seconds=$4
  cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY"), "r"))
wrk.body = f:read("*a")
f:close()
LUA
  BODY="$body" wrk -t1 -c8 -d2s -s "$work/post.lua" "$url/predict" >/dev/null
  BODY="$body" wrk -t1 -c8 -d"${seconds}s" --latency -s "$work/post.lua" "$url/predict" >"$work/wrk.txt"
}

# wrk_row WORK BATCH: one row of the table (batch, requests/s,
# predictions/s, p50 ms, p99 ms) from WORK/wrk.txt; fails on any non-2xx.
wrk_row() {
  python3 - "$1/wrk.txt" "$2" <<'PY'
import re, sys
t, batch = open(sys.argv[1]).read(), int(sys.argv[2])
if "Non-2xx" in t:
    sys.exit("the server answered errors:\n" + t)
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def ms(p):
    v, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", t).groups()
    return float(v) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
print(f"{batch:<7} {rps:<14,.0f} {rps * batch:<14,.0f} {ms(50):<10.2f} {ms(99):<10.2f}")
PY
}

# wrk_header: the table's header.
wrk_header() {
  printf '%-7s %-14s %-14s %-10s %-10s\n' batch "requests/s" "predictions/s" "p50 ms" "p99 ms"
}

# Shared helpers of the bench/*.sh scripts (sourced, not run).
# Starts and stops `stepflow serve` on a temp data dir; every wait is bounded.

bench_src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stepflow_bin=${STEPFLOW_BINARY:-$bench_src/build/stepflow}
bench_password=bench-pw
bench_auth=$(printf 'isadmin:%s' "$bench_password" | base64)
bench_tmp=""
bench_pid=""
bench_port=""

die() { echo "$(basename "$0"): $*" >&2; exit 2; }

need_tools() {
  [ -x "$stepflow_bin" ] || die "$stepflow_bin not found: build it first (cmake --build build --target stepflow)"
  command -v curl >/dev/null || die "curl is required"
  if ! command -v wrk >/dev/null; then
    echo "installing wrk (apt-get install -y wrk)" >&2
    if [ "$(id -u)" = 0 ]; then apt-get install -y wrk >&2; else sudo apt-get install -y wrk >&2; fi
    command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
  fi
}

# start_server ARGS...: serve on 127.0.0.1:0 with a fresh data dir.
start_server() {
  bench_tmp=$(mktemp -d /tmp/stepflow-bench-XXXXXX)
  trap stop_server EXIT
  STEPFLOW_ADMIN_PASSWORD=$bench_password STEPFLOW_SYNCPACKS_DIR=$bench_src/syncpacks \
    "$stepflow_bin" serve --listen 127.0.0.1:0 --data-dir "$bench_tmp/data" \
    --port-file "$bench_tmp/port" "$@" >"$bench_tmp/server.out" 2>"$bench_tmp/server.err" &
  bench_pid=$!
  for _ in $(seq 1 300); do
    [ -s "$bench_tmp/port" ] && break
    kill -0 "$bench_pid" 2>/dev/null || die "stepflow serve exited: $(cat "$bench_tmp/server.err")"
    sleep 0.05
  done
  [ -s "$bench_tmp/port" ] || die "stepflow serve wrote no port file in 15 s"
  bench_port=$(cat "$bench_tmp/port")
}

stop_server() {
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid"
    for _ in $(seq 1 200); do kill -0 "$bench_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$bench_pid" 2>/dev/null && { echo "stepflow serve ignored SIGTERM for 20 s; killing it" >&2; kill -KILL "$bench_pid"; }
    wait "$bench_pid" 2>/dev/null
  fi
  bench_pid=""
  [ -n "$bench_tmp" ] && rm -rf "$bench_tmp"
  bench_tmp=""
}

# status_field NAME: a top-level number of GET /api/v1/status.
status_field() {
  curl -s --max-time 5 "http://127.0.0.1:$bench_port/api/v1/status" |
    sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}

# wrk_ms PERCENT FILE: a latency percentile of `wrk --latency` output, in ms.
wrk_ms() {
  awk -v p="$1%" '$1 == p && !done {
      v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
      if (u == "us") v /= 1000; else if (u == "s") v *= 1000; else if (u == "m") v *= 60000;
      printf "%.2f", v; done = 1 }' "$2"
}

#!/usr/bin/env bash
# bench=ingest: durable ingest through the REST API. POST /api/v1/applications/run
# (integration_template) with wrk on 64 keep-alive connections for 10 s against
# `stepflow serve --queue-workers default=0` (runs are committed and queued but
# never started), so only HTTP + validation + the LMDB group commit are measured.
#
#   bench/ingest_bench.sh [--no-sync] [--conns N] [--duration 10s] [--http-threads N]
#   (INGEST_LUA=FILE: another wrk script instead of bench/ingest_post.lua)
#
# Prints one line:
#   bench=ingest conns=64 accepted_per_s=... p50_ms=... p99_ms=... non2xx=... durable=1
# store_commit_p50/p99_ms: the store's own commit times (write + fsync) over its
# last 1024 commits, and slow_commits (over 10 ms) over the whole run, to tell
# a slow disk from a slow server.
# accepted_per_s counts the runs the server holds afterwards (queued_and_running
# of GET /status) over wrk's measured duration. Builds nothing: needs build/stepflow.
set -u
. "$(dirname "$0")/bench_lib.sh"

conns=64 duration=10s http_threads=2 sync_flag="" durable=1
while [ $# -gt 0 ]; do
  case "$1" in
    --no-sync) sync_flag=--no-sync durable=0 ;;
    --conns) conns=$2; shift ;;
    --duration) duration=$2; shift ;;
    --http-threads) http_threads=$2; shift ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
need_tools
start_server --queue-workers default=0 --max-queue-depth 5000000 --http-threads "$http_threads" $sync_flag
out=$bench_tmp/wrk.txt
AUTH=$bench_auth APP=integration_template \
  wrk -t1 -c"$conns" -d"$duration" --latency -s "${INGEST_LUA:-$bench_src/bench/ingest_post.lua}" \
  "http://127.0.0.1:$bench_port/api/v1/applications/run" >"$out" 2>&1 || die "wrk failed: $(cat "$out")"
secs=$(sed -n 's/.* requests in \([0-9.]*\)\(m\?s\).*/\1 \2/p' "$out" | awk '{print ($2=="ms") ? $1/1000 : $1}')
requests=$(sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$out")
non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$out"); non2xx=${non2xx:-0}
errors=$(sed -n 's/.*Socket errors: *\(.*\)/\1/p' "$out" | tr -d ' ')
status_json=$(curl -s --max-time 5 "http://127.0.0.1:$bench_port/api/v1/status")
accepted=$(printf '%s' "$status_json" | sed -n 's/.*"queued_and_running":\([0-9]*\).*/\1/p')
commits=$(printf '%s' "$status_json" | sed -n 's/.*"commits":\([0-9]*\).*/\1/p')
commit_p50=$(printf '%s' "$status_json" | sed -n 's/.*"commit_ms":{"p50":\([0-9.]*\).*/\1/p')
hist=$(printf '%s' "$status_json" | sed -n 's/.*"commit_ms_histogram":{\([^}]*\)}.*/\1/p' | tr -d '"' | tr ',:' ' =' | sed 's/le_/commits_le_/g; s/more=/commits_over_500=/')
lat=$(printf '%s' "$status_json" | sed -n 's/.*"latency_ms_histogram":{\([^}]*\)}.*/\1/p' | tr -d '"' | tr ',:' ' =' | sed 's/le_/server_le_/g; s/more=/server_over_500=/')
slow=$(printf '%s' "$status_json" | sed -n 's/.*"slow_commits":\([0-9]*\).*/\1/p')
commit_p99=$(printf '%s' "$status_json" | sed -n 's/.*"commit_ms":{[^}]*"p99":\([0-9.]*\).*/\1/p')
[ -n "$accepted" ] || die "GET /status failed"
echo "bench=ingest conns=$conns http_threads=$http_threads accepted_per_s=$(awk -v a="$accepted" -v s="$secs" 'BEGIN{printf "%.0f", a/s}') p50_ms=$(wrk_ms 50 "$out") p99_ms=$(wrk_ms 99 "$out") non2xx=$non2xx requests=$requests accepted=$accepted secs=$secs${errors:+ socket_errors=$errors} commits=$commits store_commit_p50_ms=$commit_p50 store_commit_p99_ms=$commit_p99 slow_commits=$slow $hist $lat durable=$durable"

#!/usr/bin/env bash
# bench=server_runs: ten-step runs end to end through `stepflow serve`.
# A temp SyncPack holds bench_ten_steps, a chain of 10 StaticData steps. wrk
# (one thread, 64 keep-alive connections, bench/server_runs_post.lua) POSTs
# N runs to /api/v1/applications/run while the workers run them; then GET
# /status is polled every 20 ms until queued_and_running == 0. runs= is the
# number of 202 answers wrk saw (the server may hold a few more whose answer
# wrk dropped; they are run too, so runs_per_s errs low by < 0.1%).
#
#   bench/server_runs_bench.sh [--runs 20000] [--conns 64] [--workers 64] [--no-sync]
#                              [--http-threads 2]
#
# Prints one line:
#   bench=server_runs steps=10 runs=N runs_per_s=... per_step_us=... ingest_s=... total_s=...
# runs_per_s is end to end: from the first POST to the moment nothing is queued
# or running any more. per_step_us = total wall time / (runs * steps).
set -u
. "$(dirname "$0")/bench_lib.sh"

runs=20000 conns=64 workers=64 http_threads=2 sync_flag="" durable=1 steps=10
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift ;;
    --conns) conns=$2; shift ;;
    --workers) workers=$2; shift ;;
    --http-threads) http_threads=$2; shift ;;
    --no-sync) sync_flag=--no-sync durable=0 ;;
    *) die "unknown option $1" ;;
  esac
  shift
done
need_tools

pack=$(mktemp -d /tmp/stepflow-bench-pack-XXXXXX)
mkdir -p "$pack/bench_pack/apps"
cat >"$pack/bench_pack/meta.json" <<'JSON'
{"name": "bench_pack", "version": "0.0.1", "summary": "benchmark applications",
 "description": "", "author": "bench", "home_page": "", "requires_dist": [],
 "schedules": [], "tags": [], "critical": [], "requires_is_version": ">=2.0.0"}
JSON
{
  printf '{"friendly_name": "ten StaticData steps", "configuration": "", "app_variables": [], "steps": [\n'
  for i in $(seq 0 $((steps - 1))); do
    next=""
    [ "$i" -lt $((steps - 1)) ] && next=", \"output_to\": [\"s$((i + 1))\"]"
    sep=","; [ "$i" -eq $((steps - 1)) ] && sep=""
    printf '  {"name": "s%d", "file": "StaticData", "data": {"i": %d}%s}%s\n' "$i" "$i" "$next" "$sep"
  done
  printf ']}\n'
} >"$pack/bench_pack/apps/bench_ten_steps.json"

start_server --syncpack "$pack/bench_pack" --workers "$workers" --max-queue-depth 5000000 \
  --http-threads "$http_threads" $sync_flag
trap 'stop_server; rm -rf "$pack"' EXIT
curl -s --fail -o /dev/null -u "isadmin:$bench_password" \
  "http://127.0.0.1:$bench_port/api/v1/applications/bench_ten_steps" ||
  die "bench_ten_steps was not installed: $(cat "$bench_tmp/server.err")"

out=$bench_tmp/wrk.txt
t0=$(date +%s.%N)
AUTH=$bench_auth APP=bench_ten_steps RUNS=$runs \
  wrk -t1 -c"$conns" -d600s -s "$bench_src/bench/server_runs_post.lua" \
  "http://127.0.0.1:$bench_port" >"$out" 2>&1 &
wrk_pid=$!
# Wait until wrk made the last run request (at most 300 s) ...
for _ in $(seq 1 30000); do
  grep -q 'server_runs_post generated=' "$out" && break
  kill -0 "$wrk_pid" 2>/dev/null || die "wrk stopped early: $(cat "$out")"
  sleep 0.01
done
grep -q 'server_runs_post generated=' "$out" || die "wrk made fewer than $runs requests in 300 s"
t1=$(date +%s.%N)
# ... then until nothing is queued or running (two readings 20 ms apart, so
# the last POST's commit is not missed), at most 300 s.
left="" zeros=0 t2=""
for _ in $(seq 1 15000); do
  left=$(status_field queued_and_running)
  if [ "$left" = 0 ]; then
    zeros=$((zeros + 1))
    [ "$zeros" = 1 ] && t2=$(date +%s.%N)
  else
    zeros=0
  fi
  [ "$zeros" -ge 2 ] && break
  sleep 0.02
done
kill -INT "$wrk_pid" 2>/dev/null
wait "$wrk_pid"
[ "$left" = 0 ] || die "$left runs still queued or running after 300 s"
accepted=$(sed -n 's/.*server_runs_post accepted=\([0-9]*\).*/\1/p' "$out")
refused=$(sed -n 's/.*server_runs_post accepted=[0-9]* refused=\([0-9]*\).*/\1/p' "$out")
[ -n "$accepted" ] || die "no counts from wrk: $(cat "$out")"
failed=$(curl -s -u "isadmin:$bench_password" \
  "http://127.0.0.1:$bench_port/api/v1/tasks?status=failed&limit=10000" | grep -o '"task_id"' | wc -l)
awk -v n="$accepted" -v s="$steps" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c="$conns" -v w="$workers" \
    -v r="$refused" -v f="$failed" -v d="$durable" 'BEGIN {
  total = t2 - t0; ingest = t1 - t0;
  printf "bench=server_runs steps=%d runs=%d runs_per_s=%.0f per_step_us=%.2f conns=%d workers=%d ingest_s=%.2f total_s=%.2f refused=%d failed=%d durable=%d\n",
    s, n, n / total, total * 1e6 / (n * s), c, w, ingest, total, r, f, d }'

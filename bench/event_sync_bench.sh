#!/usr/bin/env bash
# bench=event_sync: the peers' event-sync benchmark (shared/peers/README.md)
# against stepflow: SL1 run book pushes -> stepflow serve -> ServiceNow POST +
# GET -> SL1 PUT of the ticket, with build/stepflow-sim as ServiceNow (18081)
# and SL1 (18082), and peers/loadgen/loadgen.js as the pusher.
#   bench/event_sync_bench.sh [N=10000] [CONCURRENCY=64]
# Prints: bench=event_sync events=N seconds=S events_per_s=X dupes=D missing=M
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N="${1:-10000}"
CONC="${2:-64}"
PEERS="${PEERS_DIR:-$ROOT/../shared/peers}"
WORK="$(mktemp -d /tmp/stepflow-eventsync-XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$ROOT/build/stepflow-sim" snow --port 18081 > "$WORK/snow.log" 2>&1 & PIDS+=($!)
"$ROOT/build/stepflow-sim" sl1 --port 18082 > "$WORK/sl1.log" 2>&1 & PIDS+=($!)
STEPFLOW_ADMIN_PASSWORD=bench-pw STEPFLOW_SYNCPACKS_DIR="$ROOT/syncpacks" \
  "$ROOT/build/stepflow" serve --listen 127.0.0.1:0 --port-file "$WORK/port" \
  --data-dir "$WORK/data" --syncpack "$ROOT/bench/event_sync" --workers 512 --http-threads 1 \
  > "$WORK/serve.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
AUTH=$(printf 'isadmin:bench-pw' | base64)
line=$(timeout 600 node "$PEERS/loadgen/loadgen.js" --system stepflow --n "$N" --concurrency "$CONC" \
  --url "http://127.0.0.1:$PORT/api/v1/applications/run" --header "Authorization: Basic $AUTH" \
  2> "$WORK/loadgen.err" | tail -1) || true
[ -n "${KEEP_LOG:-}" ] && cp "$WORK/loadgen.err" "$WORK/serve.log" /tmp/ 2>/dev/null || true
echo "bench=event_sync ${line#system=stepflow }"

#!/usr/bin/env bash
# Start the Dagster webserver (127.0.0.1:3000), the Dagster daemon (schedules, sensors, backfills) and the
# API (127.0.0.1:8000) together; Ctrl-C (or any one of them exiting) stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD}"
BIN=.venv/bin

pids=()
stop_all() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap stop_all INT TERM EXIT

"$BIN/dagster-webserver" -h 127.0.0.1 -p 3000 -w workspace.yaml & pids+=($!)
"$BIN/dagster-daemon" run -w workspace.yaml & pids+=($!)
"$BIN/technic" serve --host 127.0.0.1 --port 8000 & pids+=($!)

echo "Dagster UI: http://127.0.0.1:3000   API: http://127.0.0.1:8000/docs   (Ctrl-C stops everything)"
wait -n

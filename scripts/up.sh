#!/usr/bin/env bash
# Start the Dagster webserver (127.0.0.1:3000), the Dagster daemon (schedules, sensors, backfills, run
# monitoring) and the API (127.0.0.1:8000) together; Ctrl-C (or any one of them exiting) stops all three.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
# The instance directory, as `make` and `technic` choose it: DAGSTER_HOME if set, else the project's
# .dagster_home/; made absolute (Dagster requires it) before leaving the directory a relative one names.
# Without a config of its own it gets a link to the project's dagster.yaml (run queue, pools, run monitoring).
DAGSTER_HOME="${DAGSTER_HOME:-$repo/.dagster_home}"
mkdir -p "$DAGSTER_HOME"
DAGSTER_HOME="$(cd "$DAGSTER_HOME" && pwd)"
export DAGSTER_HOME
[ -e "$DAGSTER_HOME/dagster.yaml" ] || ln -sfn "$repo/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
cd "$repo"
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

echo "Dagster UI: http://127.0.0.1:3000   Web page: http://127.0.0.1:8000/   API docs: http://127.0.0.1:8000/docs   (Ctrl-C stops everything)"
wait -n

#!/usr/bin/env bash
# The original design's headline on one 2-core machine: a coordinator and 2 workers, one spinning
# generator thread each on its own core, no readers, 12M trades/s merged (docs/distributed.md,
# "Figures"). Extra arguments go to the coordinator, e.g. --json-output r.json; DURATION=30 for a
# longer run (default 15 s).
# Exit status: the coordinator's (0 passed, 1 failed, 3 invalid; see docs/measurement.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/load-tester
log=$(mktemp)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -f "$log"
}
trap cleanup EXIT
"$bin" --mode coordinator --port 0 --workers 2 -e 4 -t 3000000 -o 0 \
    --pacing spin --consumers 0 -d "${DURATION:-15}" "$@" > >(tee "$log") 2>&1 &
coordinator=$!
pids+=("$coordinator")
addr=""
for _ in $(seq 100); do
    addr=$(grep -oE 'Listening on [0-9.]+:[0-9]+' "$log" | head -1 | cut -d' ' -f3 || true)
    [ -n "$addr" ] && break
    kill -0 "$coordinator" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$addr" ]; then
    echo "error: the coordinator did not say where it listens" >&2
    wait "$coordinator" || exit $?
    exit 2
fi
for i in 0 1; do
    "$bin" --mode worker --coordinator "$addr" --worker-index "$i" --pin-cores "$i" \
        > /dev/null 2>&1 &
    pids+=("$!")
done
status=0
wait "$coordinator" || status=$?
exit "$status"

#!/usr/bin/env bash
# Burst test: a low baseline with 2 s spikes of 100k trades/s every 10 s; the report shows
# latency inside and outside the bursts. Extra arguments go to load-tester.
set -euo pipefail
cd "$(dirname "$0")/../load-tester"
exec cargo run --release -- --scenario burst "$@"

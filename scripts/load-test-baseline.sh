#!/usr/bin/env bash
# Baseline performance test: 3 exchanges x (10k trades + 5k book updates)/s for 60 s, judged
# against a sub-microsecond write P99. Extra arguments go to load-tester (they override the
# scenario), e.g. --json-output results.json or -d 10.
set -euo pipefail
cd "$(dirname "$0")/../load-tester"
exec cargo run --release -- --scenario baseline "$@"

#!/usr/bin/env bash
# Set up (the runtime only), then replay the bundled demo day (samples/demo) and print its alerts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh runtime
exec .venv/bin/pimwatch replay --config samples/demo/pimwatch.yaml samples/demo/day.eventhub.jsonl.gz "$@"

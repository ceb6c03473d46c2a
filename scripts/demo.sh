#!/usr/bin/env bash
# Set up (the runtime only), then replay the bundled demo day (samples/demo) and print its alerts.
# `demo.sh posture [--format jsonl]`: the posture checks against a sample tenant on a local Graph.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "posture" ]; then
  shift
  bash scripts/setup.sh graph
  exec .venv/bin/python -m pimwatch.cli.posture_demo "$@"
fi
bash scripts/setup.sh runtime
exec .venv/bin/pimwatch replay --config samples/demo/pimwatch.yaml samples/demo/day.eventhub.jsonl.gz "$@"

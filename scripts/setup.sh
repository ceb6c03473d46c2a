#!/usr/bin/env bash
# Create .venv at the repository root and install pimwatch (editable) into it.
#   scripts/setup.sh          the runtime and the dev tools (pytest, ruff, mypy, ...): scripts/test.sh
#   scripts/setup.sh runtime  the runtime only, one line of progress: scripts/demo.sh
#   scripts/setup.sh graph    the runtime and Microsoft Graph (msgraph-sdk): scripts/demo.sh posture
# Idempotent: re-installs only when pyproject.toml changed or the package does not import (a dev
# install also serves the runtime).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-dev}
case "$mode" in
  dev) target='.[dev]' probe='import pimwatch, pytest' ;;
  runtime) target='.' probe='import pimwatch' ;;
  graph) target='.[graph]' probe='import pimwatch, msgraph' ;;
  *) echo "usage: scripts/setup.sh [dev|runtime|graph]" >&2; exit 2 ;;
esac
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "pimwatch needs Python 3.11 or newer (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
installed() { [ -f ".venv/.pimwatch-$1" ] && [ "$(cat ".venv/.pimwatch-$1")" = "$want" ]; }
if { installed "$mode" || { [ "$mode" != dev ] && installed dev; } || { [ "$mode" = runtime ] && installed graph; }; } && .venv/bin/python -c "$probe" 2>/dev/null; then
  exit 0
fi
if [ "$mode" != dev ]; then
  echo "pimwatch: installing the $mode dependencies into .venv (first run only; scripts/test.sh adds the dev tools) ..." >&2
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# The dev setup upgrades pip first; the runtime installs with the venv's own pip (a download less).
if [ "$mode" = dev ]; then "${pip[@]}" --upgrade pip; fi
"${pip[@]}" -e "$target"
rm -f .venv/.pimwatch-runtime .venv/.pimwatch-graph .venv/.pimwatch-dev .venv/.pimwatch-installed
echo "$want" > ".venv/.pimwatch-$mode"

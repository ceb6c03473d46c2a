#!/usr/bin/env bash
# Set up, then lint (ruff), format check (ruff format), type check (mypy) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# What the browser and terminal tests drive, installed here when missing, on Debian/Ubuntu as root
# (CI); elsewhere those tests skip: Debian's chromium (tests/test_report.py renders the report in it),
# a real terminal (tmux) and real shells (zsh, fish for the completion scripts).
missing=()
for tool in chromium tmux zsh fish; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  case " ${missing[*]} " in *" chromium "*) missing+=(fonts-dejavu-core) ;; esac
  echo "== apt-get install ${missing[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "== ruff check" && .venv/bin/ruff check .
echo "== ruff format --check" && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Runs a command with LocalStack up; stops LocalStack afterwards if this script started it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
CTL="$ROOT/infra/localstack/ctl.py"
started=0
if ! "$PY" "$CTL" status >/dev/null 2>&1; then
  "$PY" "$CTL" up
  started=1
fi
stop() { if [ "$started" = 1 ]; then "$PY" "$CTL" down; fi; }
trap stop EXIT
"$@"

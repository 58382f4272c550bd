#!/usr/bin/env bash
# Runs a command with the local vLLM server up (http://127.0.0.1:8008/v1, model aob-tiny); stops
# it afterwards if this script started it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="$ROOT/.venv/bin/python"
CTL="$ROOT/infra/vllm/ctl.py"
"$ROOT/infra/bootstrap.sh" vllm >/dev/null  # the server's venv, created once (a few minutes)
started=0
if ! "$PY" "$CTL" status >/dev/null 2>&1; then
  "$PY" "$CTL" up
  started=1
fi
stop() { if [ "$started" = 1 ]; then "$PY" "$CTL" down; fi; }
trap stop EXIT
"$@"

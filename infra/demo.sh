#!/usr/bin/env bash
# make demo: start LocalStack and vLLM (each only if not running), preflight, migrate, deploy the
# stack, run a support-triage refund approved from the CLI (infra/demo.py), then stop what it
# started. AOB_STAGE picks the stack (default local). DEMO_KEEP_RUNNING=1 starts what is missing
# but stops nothing (for a machine where others use LocalStack and vLLM).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The Makefile's local-cloud defaults, for running this script directly.
export AWS_ENDPOINT_URL="${AWS_ENDPOINT_URL-http://127.0.0.1:4566}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AOB_ROOT="$ROOT"
PY="$ROOT/.venv/bin/python"
AOB="$ROOT/.venv/bin/aob"

if [ "${1:-}" = --steps ]; then
  "$AOB" preflight
  "$AOB" migrate
  "$AOB" deploy
  exec "$PY" infra/demo.py
fi

"$ROOT/infra/bootstrap.sh" all
if [ "${DEMO_KEEP_RUNNING:-0}" = 1 ]; then
  "$PY" infra/localstack/ctl.py up
  "$PY" infra/vllm/ctl.py up
  exec "$ROOT/infra/demo.sh" --steps
fi
exec infra/with-localstack.sh infra/with-vllm.sh "$ROOT/infra/demo.sh" --steps

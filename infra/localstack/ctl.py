"""Start, stop and inspect LocalStack in host mode (no Docker), with AOB's Lambda executor.

Usage: python infra/localstack/ctl.py up|down|status

Runs with only the standard library so any Python can call it. All LocalStack state (data, tmp,
plux cache, logs, pid) lives in the project's state folder; `down` leaves no process behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("AOB_STATE_DIR", ROOT / ".state"))
LS_STATE = STATE / "localstack"
PID_FILE = LS_STATE / "localstack.pid"
LOG_FILE = LS_STATE / "localstack.log"
PLUGIN_SRC = ROOT / "infra" / "localstack" / "plugin"
PLUGIN_META = LS_STATE / "plugin-meta"
HOST = os.environ.get("AOB_LOCALSTACK_HOST", "127.0.0.1")
PORT = int(os.environ.get("AOB_LOCALSTACK_PORT", "4566"))
ENDPOINT = f"http://{HOST}:{PORT}"
EXECUTOR_NAME = "aob-subprocess"
START_TIMEOUT_S = float(os.environ.get("AOB_LOCALSTACK_START_TIMEOUT", "90"))


def _venv_python(name: str) -> Path:
    return STATE / "venvs" / name / "bin" / "python"


def _write_plugin_metadata() -> None:
    """Register the executor as an entry point without installing it into the shared venv.

    importlib.metadata finds any *.dist-info folder on sys.path, so a generated one beside the
    plug-in source (both on PYTHONPATH) makes plux discover it; edits apply on the next start.
    """
    dist = PLUGIN_META / "aob_lambda_executor-0.1.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aob-lambda-executor\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(
        "[localstack.lambda.runtime_executor]\n"
        f"{EXECUTOR_NAME} = aob_lambda_executor.plugin:AobSubprocessExecutorPlugin\n"
    )
    shutil.rmtree(LS_STATE / "cache" / "plux", ignore_errors=True)


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV"))}
    tmp = LS_STATE / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        {
            "GATEWAY_LISTEN": f"{HOST}:{PORT}",
            "LOCALSTACK_HOST": f"{HOST}:{PORT}",
            "OVERRIDE_IN_DOCKER": "0",
            "FILESYSTEM_ROOT": str(LS_STATE / "fs"),
            "TMPDIR": str(tmp),
            "XDG_CACHE_HOME": str(LS_STATE / "cache"),
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "DNS_ADDRESS": "0",
            "SQS_ENDPOINT_STRATEGY": "path",
            "LAMBDA_RUNTIME_EXECUTOR": EXECUTOR_NAME,
            "AOB_LAMBDA_PYTHON": str(_venv_python("lambda-runtime")),
            "AOB_LAMBDA_WORK_DIR": str(LS_STATE / "lambda"),
            "PYTHONPATH": os.pathsep.join([str(PLUGIN_SRC), str(PLUGIN_META)]),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _healthy(timeout: float = 1.0) -> dict | None:
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/_localstack/health", timeout=timeout) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _running_pid() -> int | None:
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def up() -> int:
    if _running_pid() and _healthy():
        print(f"LocalStack already running at {ENDPOINT}")
        return 0
    if _healthy():
        print(
            f"error: something else already answers at {ENDPOINT}; stop it or set AOB_LOCALSTACK_PORT",
            file=sys.stderr,
        )
        return 1
    python = _venv_python("localstack")
    if not python.exists() or not _venv_python("lambda-runtime").exists():
        print(
            "error: LocalStack venvs missing; run 'infra/bootstrap.sh localstack runtime' (make setup)",
            file=sys.stderr,
        )
        return 1
    LS_STATE.mkdir(parents=True, exist_ok=True)
    _write_plugin_metadata()
    # Lambda code/environment folders of a previous run (LocalStack may stop before cleaning
    # them all up); the aob-subprocess executor recreates what it needs.
    shutil.rmtree(LS_STATE / "lambda", ignore_errors=True)
    started = time.monotonic()
    with LOG_FILE.open("ab") as log:
        proc = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            env=_environment(),
            cwd=LS_STATE,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: `down` stops it and every child
        )
    PID_FILE.write_text(str(proc.pid))
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            print(f"error: LocalStack exited with {proc.returncode}; see {LOG_FILE}", file=sys.stderr)
            return 1
        health = _healthy()
        if health and health.get("services", {}).get("stepfunctions") in ("available", "running"):
            print(f"LocalStack up at {ENDPOINT} in {time.monotonic() - started:.1f}s (log: {LOG_FILE})")
            return 0
        time.sleep(0.2)
    print(f"error: LocalStack not healthy after {START_TIMEOUT_S:.0f}s; see {LOG_FILE}", file=sys.stderr)
    down()
    return 1


def down() -> int:
    pid = _running_pid()
    if pid is None:
        PID_FILE.unlink(missing_ok=True)
        print("LocalStack not running")
        return 0
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    print("LocalStack stopped")
    return 0


def status() -> int:
    health = _healthy()
    pid = _running_pid()
    print(json.dumps({"endpoint": ENDPOINT, "pid": pid, "healthy": bool(health)}))
    return 0 if health else 1


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down, "status": status}
    if len(argv) != 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

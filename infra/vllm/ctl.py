"""Start, stop and inspect a local vLLM server (CPU build) serving the tiny `aob-tiny` model.

Usage: python infra/vllm/ctl.py up|down|status

Runs with only the standard library so any Python can call it. `up` creates the model once (with
the vLLM venv's python, see make_tiny_model.py), then starts vLLM's OpenAI-compatible server in
its own process group and waits until /health answers. Model, caches, log and pid live in the
project's state folder; `down` stops the server started from it (whatever its port) and leaves
no process behind. Commands wait for one another (a lock file). The endpoint is
http://127.0.0.1:8008/v1 (AOB_VLLM_PORT changes the port); the venv comes from
`infra/bootstrap.sh vllm`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
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
VLLM_STATE = STATE / "vllm"
PID_FILE = VLLM_STATE / "vllm.pid"
LOG_FILE = VLLM_STATE / "vllm.log"
LOCK_FILE = VLLM_STATE / "ctl.lock"
TMP_DIR = VLLM_STATE / "tmp"  # vLLM's IPC sockets and rendezvous files; removed by `down`
PYTHON = STATE / "venvs" / "vllm" / "bin" / "python"
MODEL_NAME = "aob-tiny"
MODEL_DIR = VLLM_STATE / "models" / MODEL_NAME
MODEL_SCRIPT = Path(__file__).with_name("make_tiny_model.py")
MODEL_MARKER = MODEL_DIR / ".aob-source-sha256"  # written last: the model is complete and current
HOST = "127.0.0.1"
PORT = int(os.environ.get("AOB_VLLM_PORT", "8008"))
ENDPOINT = f"http://{HOST}:{PORT}"
START_TIMEOUT_S = float(os.environ.get("AOB_VLLM_START_TIMEOUT", "240"))
STOP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 40
MAX_MODEL_LEN = 2048  # make_tiny_model.py's MAX_POSITIONS: an agent's prompt with its tools fits


def _server_command() -> list[str]:
    return [
        str(PYTHON), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(MODEL_DIR),
        "--served-model-name", MODEL_NAME,
        "--host", HOST,
        "--port", str(PORT),
        "--dtype", "float32",
        "--max-model-len", str(MAX_MODEL_LEN),
        "--enforce-eager",
        "--enable-auto-tool-choice",
        "--tool-call-parser", "hermes",
        # Pin a forced call's arguments to the tool's JSON Schema, as if every tool were
        # `strict`: otherwise only the call's envelope is constrained and a random model
        # fills "arguments" with any JSON value (`true`, a number).
        "--tool-strict-level", "parameter",
    ]  # fmt: skip


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        {
            "VLLM_TARGET_DEVICE": "cpu",
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
            "VLLM_CACHE_ROOT": str(VLLM_STATE / "cache"),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HOME": str(VLLM_STATE / "hf"),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "TMPDIR": str(TMP_DIR),
        }
    )
    return env


def _source_hash() -> str:
    return hashlib.sha256(MODEL_SCRIPT.read_bytes()).hexdigest()


def _ensure_model() -> bool:
    """Create the model unless the one on disk was made by the current make_tiny_model.py."""
    want = _source_hash()
    if MODEL_MARKER.is_file() and MODEL_MARKER.read_text() == want:
        return True
    started = time.monotonic()
    MODEL_DIR.parent.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(PYTHON), str(MODEL_SCRIPT), str(MODEL_DIR)],
        env=_environment(),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(f"error: creating the model failed:\n{result.stdout}{result.stderr}", file=sys.stderr)
        return False
    MODEL_MARKER.write_text(want)
    print(f"model {MODEL_NAME} created at {MODEL_DIR} in {time.monotonic() - started:.1f}s")
    return True


def _healthy(timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _group_alive(pgid: int) -> bool:
    # When this process started the server (up), reap its leader: a zombie still counts as alive.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _running_pid() -> int | None:
    """The server's pid, which is also its process group id, while any process of the group lives."""
    try:
        pid = int(PID_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _group_alive(pid) else None


def _log_tail() -> str:
    try:
        lines = LOG_FILE.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(empty)"


def _fail(message: str) -> int:
    print(f"error: {message}; last lines of {LOG_FILE}:\n{_log_tail()}", file=sys.stderr)
    return 1


def up() -> int:
    pid = _running_pid()
    if pid and _healthy():
        print(f"vLLM already running at {ENDPOINT}/v1")
        return 0
    if pid:
        print(
            f"error: the vLLM server started here (pid {pid}) does not answer at {ENDPOINT}: it is hung or"
            " serves another AOB_VLLM_PORT; run 'infra/vllm/ctl.py down' first",
            file=sys.stderr,
        )
        return 1
    if _healthy():
        print(f"error: something else answers at {ENDPOINT}; stop it or set AOB_VLLM_PORT", file=sys.stderr)
        return 1
    if not PYTHON.exists():
        print("error: vLLM venv missing; run 'infra/bootstrap.sh vllm' (once, minutes)", file=sys.stderr)
        return 1
    shutil.rmtree(TMP_DIR, ignore_errors=True)  # left by a server that was killed
    TMP_DIR.mkdir(parents=True)
    if not _ensure_model():
        return 1
    started = time.monotonic()
    with LOG_FILE.open("wb") as log:
        proc = subprocess.Popen(
            _server_command(),
            env=_environment(),
            cwd=VLLM_STATE,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: `down` stops the API server and engine
        )
    PID_FILE.write_text(str(proc.pid))
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            down(quiet=True)  # the engine process may outlive the API server
            return _fail(f"vLLM exited with {proc.returncode} while starting")
        if _healthy():
            print(f"vLLM up at {ENDPOINT}/v1 in {time.monotonic() - started:.1f}s (log: {LOG_FILE})")
            return 0
        time.sleep(0.5)
    down(quiet=True)
    return _fail(f"vLLM not healthy after {START_TIMEOUT_S:.0f}s (AOB_VLLM_START_TIMEOUT)")


def down(quiet: bool = False) -> int:
    pgid = _running_pid()
    if pgid is not None:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.5)
        if _group_alive(pgid):
            print(f"error: processes of group {pgid} survived SIGKILL", file=sys.stderr)
            return 1
    PID_FILE.unlink(missing_ok=True)
    shutil.rmtree(TMP_DIR, ignore_errors=True)
    if not quiet:
        print("vLLM stopped" if pgid else "vLLM not running")
    return 0


def status() -> int:
    healthy = _healthy()
    report = {"endpoint": f"{ENDPOINT}/v1", "model": MODEL_NAME, "pid": _running_pid(), "healthy": healthy}
    print(json.dumps(report))
    return 0 if healthy else 1


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down, "status": status}
    if len(argv) != 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    VLLM_STATE.mkdir(parents=True, exist_ok=True)
    # One command at a time: a second `up` waits for the first and then finds the server running.
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return commands[argv[1]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""pytest plug-in: a real vLLM server (CPU build, tiny random model) for the session.

Register with `pytest_plugins = ["tests.vllm_server"]` (or `-p tests.vllm_server`). The
`vllm_endpoint` fixture starts the server through infra/vllm/ctl.py unless one already answers,
and stops it at the end of the session only if it started it, checking that no process is left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CTL = ROOT / "infra" / "vllm" / "ctl.py"
ENDPOINT = f"http://127.0.0.1:{os.environ.get('AOB_VLLM_PORT', '8008')}"
MODEL = "aob-tiny"


def _healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/health", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _ctl(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CTL), command], capture_output=True, text=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.fixture(scope="session")
def vllm_endpoint() -> Iterator[str]:
    """Base URL of the vLLM server (`http://127.0.0.1:8008`; the OpenAI API is under /v1)."""
    if _healthy():
        yield ENDPOINT
        return
    started = _ctl("up")
    if started.returncode != 0:
        pytest.fail(f"could not start vLLM:\n{started.stdout}{started.stderr}", pytrace=False)
    pgid = json.loads(_ctl("status").stdout)["pid"]
    yield ENDPOINT
    stopped = _ctl("down")
    assert stopped.returncode == 0, stopped.stderr
    assert not _healthy(), f"vLLM still answers at {ENDPOINT} after `ctl.py down`"
    assert not _group_alive(pgid), f"processes of vLLM's group {pgid} left after `ctl.py down`"

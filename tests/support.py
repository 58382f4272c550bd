"""What several test files share: handlers loaded from functions/, a Lambda-like context, a clock."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

type Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def load_handler(function: str) -> Handler:
    """functions/<function>/app.py's lambda_handler, imported afresh (module state starts clean)."""
    spec = importlib.util.spec_from_file_location(
        f"aob_function_{function}", ROOT / "functions" / function / "app.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lambda_handler


def lambda_context(function: str) -> SimpleNamespace:
    """The attributes powertools' inject_lambda_context reads from a Lambda context."""
    return SimpleNamespace(
        function_name=function,
        function_version="$LATEST",
        invoked_function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{function}",
        memory_limit_in_mb=256,
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function}",
        log_stream_name="in-process",
        get_remaining_time_in_millis=lambda: 30_000,
    )


class Clock:
    """An injectable clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


INSERT_WORKFLOW = """
INSERT INTO workflows (tenant_id, name, version, spec, spec_sha256)
VALUES (%s, %s, 1, '{}', 'sha') RETURNING workflow_id
"""
INSERT_RUN = "INSERT INTO runs (tenant_id, workflow_id, status) VALUES (%s, %s, 'running') RETURNING run_id"
INSERT_STEP = """
INSERT INTO steps (tenant_id, run_id, state_name, kind) VALUES (%s, %s, %s, %s) RETURNING step_id
"""


def insert_run(conn: Any, tenant_id: str, workflow: str = "test") -> uuid.UUID:
    """A running run of a placeholder workflow version, as the runs service would have stored it."""
    (workflow_id,) = conn.execute(INSERT_WORKFLOW, (tenant_id, workflow)).fetchone()
    (run_id,) = conn.execute(INSERT_RUN, (tenant_id, workflow_id)).fetchone()
    return run_id


def insert_step(conn: Any, tenant_id: str, run_id: uuid.UUID, state_name: str, kind: str) -> uuid.UUID:
    (step_id,) = conn.execute(INSERT_STEP, (tenant_id, run_id, state_name, kind)).fetchone()
    return step_id

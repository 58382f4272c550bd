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

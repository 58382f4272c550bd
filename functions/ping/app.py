"""Liveness probe: answers with the layer version it runs with and the echoed input."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aob
from aws_lambda_powertools.utilities.typing import LambdaContext


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return {
        "ok": True,
        "layer_version": aob.__version__,
        "layer_path": str(Path(aob.__file__).parent),
        "echo": event,
    }

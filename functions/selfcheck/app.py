"""Self-check step: event -> aob.selfcheck.run_step -> result."""

from __future__ import annotations

from typing import Any

from aob.handlers import parse_event
from aob.selfcheck import SelfcheckRequest, run_step
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(SelfcheckRequest, event)
    logger.append_keys(run_id=request.execution, step_id=request.step)
    return run_step(request).model_dump(mode="json")

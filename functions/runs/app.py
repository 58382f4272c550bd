"""Runs service: `{"action": "start" | "get" | "summary", ...}` -> aob.runs RunService.

Used by the CLI (`aob run`, `aob runs show`) and the HTTP API. A bad event raises InvalidInput
naming each field; an unknown run or workflow raises UnknownRun / UnknownWorkflow.
"""

from __future__ import annotations

from typing import Any

from aob.handlers import parse_event
from aob.runs import RunsRequest, get_run_service
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(RunsRequest, event)
    logger.append_keys(tenant_id=request.root.tenant_id, action=request.root.action)
    return get_run_service().handle(request).model_dump(mode="json")

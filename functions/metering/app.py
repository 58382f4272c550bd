"""Metering step: reserve tokens before a call, settle them after, or query usage."""

from __future__ import annotations

from typing import Any

from aob.handlers import parse_event
from aob.metering import MeteringRequest, get_metering
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(MeteringRequest, event).root
    logger.append_keys(tenant_id=request.tenant_id, action=request.action)
    return get_metering().handle(request).model_dump(mode="json")

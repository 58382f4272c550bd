"""Session-lease step: acquire, renew or release a session's lease (with its fencing token)."""

from __future__ import annotations

from typing import Any

from aob.handlers import parse_event
from aob.lease import LeaseRequest, get_session_leases
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(LeaseRequest, event).root
    logger.append_keys(tenant_id=request.tenant_id, session_id=request.session_id, action=request.action)
    return get_session_leases().handle(request).model_dump(mode="json")

"""Policy check step: event -> aob.policy PolicyService.check -> decision (a deny is a result, not an error).

The service loads once per container from AOB_POLICY_BUNDLE (a signed bundle file) and verifies it
against AOB_POLICY_TRUSTED_KEYS; see aob.policy._runtime.
"""

from __future__ import annotations

from typing import Any

from aob.handlers import parse_event
from aob.policy import PolicyInput, get_policy_service
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(PolicyInput, event)
    logger.append_keys(tenant_id=request.tenant_id, run_id=request.run_id, step_id=request.step_id)
    decision = get_policy_service().check(request)
    logger.info("policy decision", extra={"decision_id": decision.decision_id, "allow": decision.allow})
    return decision.model_dump(mode="json")

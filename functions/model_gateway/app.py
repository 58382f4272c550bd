"""Model call step: event (ChatRequest) -> aob.llm ModelGateway.complete -> ChatResult.

Routes come from AOB_MODEL_ROUTES (see aob.llm._config); the policy service and metering are the
container's. Errors are named for the state machine: UnknownModelTier, PromptTooLarge, InvalidInput,
PolicyDenied, QuotaExceeded, ModelRequestRejected (don't retry), ModelUnavailable (Retry).
"""

from __future__ import annotations

from typing import Any

from aob.handlers import parse_event
from aob.llm import ChatRequest, get_model_gateway
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse_event(ChatRequest, event)
    logger.append_keys(tenant_id=request.tenant_id, run_id=request.run_id, step_id=request.step_id)
    return get_model_gateway().complete(request).model_dump(mode="json")

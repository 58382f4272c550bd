"""Tool gateway step: event -> aob.tools ToolGateway.call -> ToolResult.

Validation, policy, metering, at-most-once execution and redaction all happen in the layer; a
refusal or failure raises its named error (UnknownTool, InvalidToolArguments, ToolNotAllowed,
PolicyDenied, ApprovalRequired, QuotaExceeded, ToolFailed, ToolResponseTooLarge, ToolUnavailable,
ToolCallInProgress) for the state machine's Retry and Catch.
"""

from __future__ import annotations

from typing import Any

from aob.handlers import parse_event
from aob.tools import ToolCall, get_tool_gateway
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    call = parse_event(ToolCall, event)
    logger.append_keys(tenant_id=call.tenant_id, run_id=call.run_id, step_id=call.step_id, tool=call.tool)
    result = get_tool_gateway().call(call)
    logger.info(
        "tool call",
        extra={"decision_id": result.decision_id, "replayed": result.replayed, "truncated": result.truncated},
    )
    return result.model_dump(mode="json")

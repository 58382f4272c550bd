"""Approval step: a task-token request from the state machine, or a person's decision from the CLI/API.

Request (the `approval` node's waitForTaskToken task): {tenant_id, principal, run_id, step_id,
task_token, session_id, fencing_token, node, approver_role, timeout_s, reason?} -> {approval_id, status};
the run then waits.
Decision: {"action": "decide", tenant_id, run_id, principal, approve, reason?, approval_id?} -> the
approval as stored. Refusals raise their named errors (InvalidInput, UnknownRun, NoPendingApproval,
ApprovalExpired, PolicyDenied, StaleFencingToken, ServiceUnavailable). The task token is never logged.
"""

from __future__ import annotations

from typing import Any

from aob.approvals import ApprovalRequest, DecideRequest, get_approval_service
from aob.handlers import parse_event
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if isinstance(event, dict) and event.get("action") == "decide":
        decision = parse_event(DecideRequest, event)
        logger.append_keys(
            tenant_id=decision.tenant_id, run_id=decision.run_id, subject=decision.principal.subject
        )
        approval = get_approval_service().decide(**decision.model_dump(exclude={"action"}))
        logger.info(
            "approval decided", extra={"approval_id": approval.approval_id, "status": approval.status}
        )
        return approval.model_dump(mode="json")
    request = parse_event(ApprovalRequest, event)
    logger.append_keys(tenant_id=request.tenant_id, run_id=request.run_id, step_id=request.step_id)
    requested = get_approval_service().request(request)
    logger.info(
        "approval requested", extra={"approval_id": requested.approval_id, "status": requested.status}
    )
    return requested.model_dump(mode="json")

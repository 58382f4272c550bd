"""Human approvals of workflow steps: an `approval` node waits on a task token until a person decides.

`get_approval_service().request(ApprovalRequest)` is what functions/approval runs for the state
machine; `.decide(...)` is what it runs for the CLI (`aob approve`) and the API. Who may decide is a
policy decision (action kind `approve`, policies/approve.rego).
"""

from __future__ import annotations

from aob.approvals._callback import GONE, StepFunctionsCallback, TaskCallback
from aob.approvals._models import Approval, ApprovalRequest, ApprovalRequested, DecideRequest, Status
from aob.approvals._runtime import get_approval_service
from aob.approvals._service import REJECTED_ERROR, ApprovalService, PolicyGate

__all__ = [
    "GONE",
    "REJECTED_ERROR",
    "Approval",
    "ApprovalRequest",
    "ApprovalRequested",
    "ApprovalService",
    "DecideRequest",
    "PolicyGate",
    "Status",
    "StepFunctionsCallback",
    "TaskCallback",
    "get_approval_service",
]

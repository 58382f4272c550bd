"""The container's ApprovalService, built on first use (nothing connects at import).

Needs AOB_DATABASE_URL, and AWS_ENDPOINT_URL (unset on AWS) for Step Functions. Deciding also
needs the policy settings (AOB_POLICY_BUNDLE, AOB_POLICY_TRUSTED_KEYS); requests and look-ups do
not, so the policy service is only built at the first decision.
"""

from __future__ import annotations

import functools

from aob.approvals._callback import StepFunctionsCallback
from aob.approvals._service import ApprovalService
from aob.policy import PolicyDecision, PolicyInput, get_policy_service


class _ContainerPolicy:
    """The container's PolicyService, looked up at each check (it is built and cached on first use)."""

    def check(self, request: PolicyInput) -> PolicyDecision:
        return get_policy_service().check(request)


@functools.cache
def get_approval_service() -> ApprovalService:
    """The process's service; tests that change the environment call `get_approval_service.cache_clear()`."""
    return ApprovalService(_ContainerPolicy(), StepFunctionsCallback())

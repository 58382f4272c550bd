"""What the approval function takes (a request from the state machine, a decision from a person)
and what it answers (the approval as stored, without its task token)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from aob.policy import Principal
from aob.policy._models import Name
from aob.recorder import SessionId
from aob.tenants import TenantId

Status = Literal["pending", "approved", "rejected", "expired"]
# Step Functions task tokens are opaque and long (AWS documents up to 1024 characters).
TaskToken = Annotated[str, StringConstraints(min_length=1, max_length=8192)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApprovalRequest(_Model):
    """The state machine's `approval` task (aob.workflows._states.approval): wait for a human."""

    tenant_id: TenantId
    principal: Principal = Field(description="the run's principal: the requester, who may not approve")
    run_id: UUID
    step_id: UUID
    task_token: TaskToken = Field(repr=False)
    session_id: SessionId = Field(description="the run's session: its approval records are written under it")
    fencing_token: int = Field(gt=0, description="the run's lease: $.governance.lease.value.fencing_token")
    node: Name
    approver_role: Name
    timeout_s: int = Field(ge=1, le=365 * 24 * 3600)
    reason: Reason | None = None


class ApprovalRequested(_Model):
    approval_id: UUID
    status: Status


class DecideRequest(_Model):
    """A person approving or rejecting a run's pending approval (the CLI's and the API's event)."""

    action: Literal["decide"] = "decide"
    tenant_id: TenantId
    run_id: UUID
    principal: Principal = Field(description="who decides; the policy says whether they may")
    approve: bool
    reason: Reason | None = None
    approval_id: UUID | None = Field(
        default=None, description="which approval; default the run's pending one"
    )

    @model_validator(mode="after")
    def _rejection_says_why(self) -> Self:
        if not self.approve and self.reason is None:
            raise PydanticCustomError(
                "reason_required",
                "reason: a rejection needs a reason (the run's failure shows it); pass --reason",
            )
        return self


class Approval(BaseModel):
    """One approval as stored; the task token stays in the database."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    approval_id: UUID
    run_id: UUID
    step_id: UUID
    node: str
    approver_roles: list[str]
    reason: str | None
    status: Status
    requested_by: str
    decided_by: str | None
    decided_roles: list[str] | None
    decision_reason: str | None
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None

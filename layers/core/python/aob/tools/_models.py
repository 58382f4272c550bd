"""What a tool call takes (ToolCall) and what it answers (ToolResult)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from aob.policy import Principal, StepGovernance
from aob.policy._models import Name
from aob.recorder import RecordTarget
from aob.tenants import TenantId

# A registered tool's name: the policy catalogue's key, and part of log lines and messages.
ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]


class ToolCall(BaseModel):
    """One governed tool call of a run's step.

    `step_id` names the call within the run and must stay the same when the step is retried
    or replayed: with the tenant, the run, the tool and the arguments it makes the call's
    idempotency key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: TenantId
    principal: Principal
    run_id: UUID
    step_id: UUID
    # Any name: one the registry lacks is an UnknownTool error listing the known tools.
    tool: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    args: dict[str, JsonValue] = {}
    data_classes: list[Name] = []
    approval_id: UUID | None = Field(
        default=None, description="an approved approval of this run, for a call the policy says needs one"
    )
    record: RecordTarget | None = Field(
        default=None, description="fused mode: record the step's DecisionRecord (node and session lease)"
    )
    governance: StepGovernance | None = Field(
        default=None,
        description="explicit mode: the state machine's decision and reservation, used instead of its own",
    )


class ToolResult(BaseModel):
    tool: str
    result: JsonValue = Field(
        description="the tool's result, redacted; when truncated, the first bytes of its JSON text"
    )
    truncated: bool = Field(description="the result's JSON passed the gateway's cap and was cut")
    claimed: bool = Field(
        default=False, description="the result was too large for the state: `result` is its S3 claim ($claim)"
    )
    redacted: list[str] = Field(description="the policy's redaction paths that matched (args and result)")
    idempotency_key: str
    replayed: bool = Field(description="an earlier attempt of this call ran the tool: its result is returned")
    decision_id: UUID = Field(description="the policy decision that allowed the call")
    duration_ms: float = Field(description="how long the tool ran (in the attempt that ran it)")

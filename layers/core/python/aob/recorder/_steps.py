"""One governed step to record: what the gateway was asked, what it answered, which policy let it.

Both governance modes build the DecisionRecord here, so they record the same thing: explicit
mode's `<Step>Record` state sends a RecordStepRequest to functions/step_recorder; fused mode's
gateways build one in-process after the call (or the denial) and hand it to their StepRecorder.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue

from aob.recorder._models import (
    DecisionRecord,
    ModelRef,
    Node,
    PolicyRef,
    StoredRecord,
    Timings,
    ToolCall,
    Usage,
)
from aob.tenants import TenantId

SessionId = Annotated[str, Field(min_length=1, max_length=200)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordTarget(_Strict):
    """Where a fused gateway records its step: the node, and the session lease it writes under.

    The compiler puts it in the gateway payload as `record`; a call without it records nothing.
    """

    node: str = Field(min_length=1, max_length=200)
    session_id: SessionId
    fencing_token: int = Field(gt=0, description="the run's lease: $.governance.lease.value.fencing_token")
    attempt: int = Field(default=1, gt=0)


class StepPolicy(BaseModel):
    """The parts of a PolicyDecision (as policy_check returns it) that a record keeps."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    decision_id: uuid.UUID
    bundle_digest: str | None = None
    allow: bool | None = None
    reasons: list[str] = Field(default_factory=list)


class RecordStepRequest(_Strict):
    """What functions/step_recorder takes: one step of a run, to append to the run's chain."""

    tenant_id: TenantId
    session_id: SessionId
    fencing_token: int = Field(gt=0, description="the run's lease: $.governance.lease.value.fencing_token")
    run_id: uuid.UUID
    step_id: uuid.UUID
    attempt: int = Field(default=1, gt=0)
    node: Node
    outcome: Literal["succeeded", "failed", "denied", "waiting", "skipped"]
    call: dict[str, JsonValue] = Field(
        default_factory=dict, description="what the gateway was asked: tool and args, or messages"
    )
    result: dict[str, JsonValue] | None = Field(
        default=None, description="the gateway's answer (ToolResult or ChatResult as JSON)"
    )
    policy: StepPolicy | None = Field(default=None, description="the policy decision that governed the step")
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None

    def to_record(self, now: datetime) -> DecisionRecord:
        """The DecisionRecord of this step; times the request lacks are `now` (the record's time)."""
        result = self.result or {}
        return DecisionRecord(
            run_id=self.run_id,
            step_id=self.step_id,
            attempt=self.attempt,
            node=self.node,
            outcome=self.outcome,
            inputs=dict(self.call),
            prompt=_text(self.call.get("prompt")),
            messages=_dicts(self.call.get("messages")),
            model=ModelRef(name=str(result["model"]), version=_text(result.get("model_version")))
            if result.get("model")
            else None,
            tool=ToolCall(
                name=str(self.call["tool"]), input=_dict(self.call.get("args")), output=result.get("result")
            )
            if self.node.kind == "tool" and self.call.get("tool")
            else None,
            output=_reply(result),
            policy=self._policy_ref(result),
            usage=_usage(result),
            timings=self._timings(result, now),
            error={"error": "PolicyDenied", "reasons": self.policy.reasons}
            if self.outcome == "denied" and self.policy
            else None,
        )

    def _policy_ref(self, result: dict[str, Any]) -> PolicyRef:
        # explicit mode: the CheckPolicy decision, then the gateway's own; fused: one decision.
        found = [str(self.policy.decision_id)] if self.policy else []
        if result.get("decision_id"):
            found.append(str(result["decision_id"]))
        return PolicyRef(
            decision_ids=list(dict.fromkeys(found)), bundle_digest=self.policy and self.policy.bundle_digest
        )

    def _timings(self, result: dict[str, Any], now: datetime) -> Timings:
        if self.started_at and self.ended_at:
            return Timings(started_at=self.started_at, ended_at=self.ended_at)
        took = result.get("latency_ms", result.get("duration_ms"))
        if isinstance(took, int | float) and not isinstance(took, bool) and took >= 0:
            return Timings(started_at=now - timedelta(milliseconds=took), ended_at=now)
        return Timings(started_at=now, ended_at=now)


class StepRecorder(Protocol):
    """What the gateways need to record a step (aob.recorder.Recorder)."""

    def record_step(self, request: RecordStepRequest) -> StoredRecord: ...


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _reply(result: dict[str, Any]) -> Any:
    """A model's answer: the first choice's message."""
    choices = result.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0].get("message")
    return None


def _usage(result: dict[str, Any]) -> Usage:
    usage = _dict(result.get("usage"))
    return Usage(
        input_tokens=int(usage.get("prompt_tokens", usage.get("input_tokens", 0)) or 0),
        output_tokens=int(usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0),
    )

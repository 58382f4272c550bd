"""ToolGateway: one governed tool call, in-process (fused mode) or behind functions/tool_gateway.

1. Validate: the tool exists (UnknownTool), the arguments fit its model (InvalidToolArguments)
   and, for HTTP tools, reach an allow-listed host (ToolNotAllowed). Nothing else has happened.
2. Policy gate: PolicyService.check records a decision; a deny raises PolicyDenied, an obligation
   `require_approval` raises ApprovalRequired, one the gateway does not know stops the call
   (PolicyEvaluationFailed). Arguments named by `redact` are scrubbed before the tool sees them:
   the egress policy asks for redaction where the destination may not receive that data.
3. Metering: reserve one request (0 tokens) of capability `tool_gateway` under the idempotency
   key, so every attempt of a call counts once; settle after the tool ran or failed.
   Explicit mode: a call with `governance` was checked and reserved by its state machine; step 2
   loads that recorded decision instead (aob.policy.governing_decision: GovernanceMismatch unless
   made for this call) and enforces it as above, and step 3 is the state machine's.
4. Run the tool at most once per idempotency key (see aob.tools._idempotency).
5. Redact the result at the `redact` paths under `$.result`, then cut it to `max_result_bytes`, or,
   with a claim store, move one over `inline_result_bytes` to S3 and return its claim
   (aob.tools._claims; claims in the arguments are read back before step 1).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from pydantic import JsonValue, ValidationError

from aob.approvals import Approval
from aob.errors import (
    AobError,
    ApprovalRequired,
    ConfigurationError,
    InvalidToolArguments,
    PolicyDenied,
    PolicyEvaluationFailed,
)
from aob.metering import Reservation, ReserveRequest, Settlement, SettleRequest
from aob.policy import (
    DecisionReader,
    PolicyDecision,
    PolicyInput,
    PostgresDecisionRecorder,
    governing_decision,
)
from aob.recorder import Node, RecordStepRequest, StepPolicy, StepRecorder
from aob.tools import _claims
from aob.tools._idempotency import IdempotentCalls, idempotency_key
from aob.tools._models import ToolCall, ToolResult
from aob.tools._output import Redaction
from aob.tools._registry import ToolRegistry
from aob.tools._tool import problems

logger = logging.getLogger(__name__)

CAPABILITY = "tool_gateway"
DEFAULT_MAX_RESULT_BYTES = 64 * 1024
KNOWN_OBLIGATIONS = frozenset({"redact", "require_approval"})


class PolicyGate(Protocol):
    def check(self, request: PolicyInput) -> PolicyDecision: ...


class Meter(Protocol):
    def reserve(self, request: ReserveRequest) -> Reservation: ...

    def settle(self, request: SettleRequest) -> Settlement: ...


def _ids(call: ToolCall) -> dict[str, Any]:
    return {
        "tenant_id": call.tenant_id,
        "run_id": str(call.run_id),
        "step_id": str(call.step_id),
        "tool": call.tool,
    }


def _policy_input(call: ToolCall, args: dict[str, JsonValue]) -> PolicyInput:
    action = {"kind": "tool", "tool": call.tool, "args": args, "data_classes": call.data_classes}
    try:
        return PolicyInput.model_validate(
            {
                "tenant_id": call.tenant_id,
                "principal": call.principal,
                "action": action,
                "run_id": call.run_id,
                "step_id": call.step_id,
            }
        )
    except ValidationError as exc:  # values the policy engine cannot take safely (NUL, huge integers)
        raise InvalidToolArguments(f"invalid arguments for tool {call.tool}: {problems(exc)}") from exc


class ApprovalLookup(Protocol):
    def get(self, tenant_id: str, run_id: UUID, approval_id: UUID) -> Approval | None: ...


def _default_approvals() -> ApprovalLookup:
    from aob.approvals import get_approval_service  # built on first use, only for calls that carry one

    return get_approval_service()


def _approved_by(
    call: ToolCall, approver_roles: list[str], approvals: ApprovalLookup | None
) -> tuple[Approval | None, str]:
    """The call's approval if it lets the call through, else None and why not."""
    if call.approval_id is None:
        return None, "the call carries no approval_id"
    found = (approvals or _default_approvals()).get(call.tenant_id, call.run_id, call.approval_id)
    if found is None:
        return None, f"approval {call.approval_id} is not one of run {call.run_id}"
    if found.status != "approved":
        return None, f"approval {call.approval_id} is {found.status}, not approved"
    if not set(found.decided_roles or []) & set(approver_roles):
        return (
            None,
            f"approval {call.approval_id} was decided by {found.decided_by}, who holds none of these roles",
        )
    return found, ""


def enforce(call: ToolCall, decision: PolicyDecision, approvals: ApprovalLookup | None = None) -> Redaction:
    """The redaction to apply if the decision lets the call run; otherwise the error that stops it.

    An obligation `require_approval` is met by the call's `approval_id`: an approval of the same
    tenant and run, approved by someone holding one of the obligation's approver roles (looked up
    in `approvals`, by default the container's ApprovalService).
    """
    decision_id = str(decision.decision_id)
    if not decision.allow:
        raise PolicyDenied(
            f"policy denied tool {call.tool} for tenant {call.tenant_id}: {'; '.join(decision.reasons)}",
            decision_id=decision_id,
            reasons=list(decision.reasons),
        )
    unknown = sorted(set(decision.obligations) - KNOWN_OBLIGATIONS)
    if unknown:
        raise PolicyEvaluationFailed(f"the tool gateway cannot honour obligations {unknown}: call refused")
    approval = decision.obligations.get("require_approval")
    if approval is not None:
        details = approval if isinstance(approval, dict) else {}
        roles = details.get("approver_roles")
        approver_roles = [str(role) for role in roles] if isinstance(roles, list) else []
        reason = str(details.get("reason") or f"{call.tool} needs approval")
        approved, why_not = _approved_by(call, approver_roles, approvals)
        if approved is None:
            raise ApprovalRequired(
                f"{reason}; ask one of: {', '.join(approver_roles) or 'an approver'} ({why_not})",
                decision_id=decision_id,
                approver_roles=approver_roles,
                reason=reason,
            )
        logger.info("approval %s honoured", approved.approval_id, extra=_ids(call))
    return Redaction.from_obligation(decision.obligations.get("redact", []))


class ToolGateway:
    def __init__(
        self,
        registry: ToolRegistry,
        policy: PolicyGate,
        metering: Meter,
        calls: IdempotentCalls,
        *,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        recorder: StepRecorder | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        decisions: DecisionReader | None = None,
        claims: _claims.ClaimStore | None = None,
        inline_result_bytes: int = _claims.DEFAULT_INLINE_RESULT_BYTES,
    ) -> None:
        self._decisions = decisions or PostgresDecisionRecorder()  # connects on first use
        self._claims = claims
        self._inline_result_bytes = inline_result_bytes
        self._recorder = recorder
        self._clock = clock
        self.registry = registry
        self._policy = policy
        self._metering = metering
        self._calls = calls
        self._max_result_bytes = max_result_bytes

    def call(self, call: ToolCall) -> ToolResult:
        """Validate, gate, meter, run once and shape one call; each failure raises its named error."""
        tool = self.registry.get(call.tool)
        args = tool.validate(_claims.resolve_args(self._claims, call))
        request = _policy_input(call, args)
        key = idempotency_key(call, args)
        decision = self._decision(call, request)
        if not decision.allow:
            recorded = _claims.reclaim(call.args, args, args)  # the claims, not their content
            self._record(call, "denied", recorded, decision)  # then enforce raises PolicyDenied
        redaction = enforce(call, decision)
        sent_args, redacted = redaction.apply("args", args)
        reservation = None
        if call.governance is None:  # explicit mode: the state machine reserved and settles
            reservation = self._metering.reserve(
                ReserveRequest(
                    tenant_id=call.tenant_id, capability=CAPABILITY, estimate_tokens=0, request_id=key
                )
            )
        started = self._clock()
        try:
            executed = self._calls.run(key, lambda: tool.execute(sent_args, key), timeout_s=tool.timeout_s)
        except Exception:
            self._settle_after_failure(call, reservation)
            raise
        self._settle(call, reservation)
        result, redacted_in_result = redaction.apply("result", executed.result)
        result, claimed, truncated = _claims.shape_result(
            self._claims, result, call, self._inline_result_bytes, self._max_result_bytes
        )
        logger.info(
            "tool call %s",
            "replayed" if executed.replayed else "executed",
            extra=_ids(call) | {"idempotency_key": key, "decision_id": str(decision.decision_id)},
        )
        answer = ToolResult(
            tool=call.tool,
            result=result,
            truncated=truncated,
            claimed=claimed,
            redacted=redacted + redacted_in_result,
            idempotency_key=key,
            replayed=executed.replayed,
            decision_id=decision.decision_id,
            duration_ms=executed.duration_ms,
        )
        recorded_args = _claims.reclaim(call.args, args, sent_args)  # the claims, not their content
        self._record(call, "succeeded", recorded_args, decision, answer, (started, self._clock()))
        return answer

    def _decision(self, call: ToolCall, request: PolicyInput) -> PolicyDecision:
        """A new (recorded) decision, or explicit mode's: the state machine's, verified for this call."""
        if call.governance is None:
            return self._policy.check(request)
        return governing_decision(self._decisions, request, call.governance)

    def _record(
        self,
        call: ToolCall,
        outcome: str,
        args: dict[str, JsonValue],
        decision: PolicyDecision,
        answer: ToolResult | None = None,
        timed: tuple[datetime, datetime] | None = None,
    ) -> None:
        """Fused mode: write the step's DecisionRecord when the call says where (`record`)."""
        if call.record is None:
            return
        if self._recorder is None:
            raise ConfigurationError(
                "record: this tool gateway has no recorder; build it with one (get_tool_gateway does)"
            )
        started, ended = timed or (None, None)
        self._recorder.record_step(
            RecordStepRequest.model_validate(
                {
                    "tenant_id": call.tenant_id,
                    "session_id": call.record.session_id,
                    "fencing_token": call.record.fencing_token,
                    "run_id": call.run_id,
                    "step_id": call.step_id,
                    "attempt": call.record.attempt,
                    "node": Node(name=call.record.node, kind="tool"),
                    "outcome": outcome,
                    "call": {"tool": call.tool, "args": args},  # args as sent: redacted where the policy said
                    "result": answer and answer.model_dump(mode="json"),
                    "policy": StepPolicy.model_validate(decision.model_dump(mode="json")),
                    "started_at": started,
                    "ended_at": ended,
                }
            )
        )

    def _settle(self, call: ToolCall, reservation: Reservation | None) -> None:
        if reservation is None:  # explicit mode: the state machine settles
            return
        self._metering.settle(
            SettleRequest(
                tenant_id=call.tenant_id,
                reservation_id=reservation.reservation_id,
                input_tokens=0,
                output_tokens=0,
                run_id=call.run_id,
                step_id=call.step_id,
            )
        )

    def _settle_after_failure(self, call: ToolCall, reservation: Reservation | None) -> None:
        # The tool's error is what the caller must see; an unsettled reservation expires on its own.
        if reservation is None:  # explicit mode: the state machine settles
            return
        try:
            self._settle(call, reservation)
        except AobError as exc:
            logger.warning(
                "could not settle %s after a failed call: %s",
                reservation.reservation_id,
                exc,
                extra=_ids(call),
            )

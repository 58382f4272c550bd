"""Explicit mode's governance, handed to a gateway: the state machine's recorded decision, verified.

In explicit mode the state machine checks the policy (CheckPolicy records the decision) and
reserves and settles the tokens; the gateway call carries `governance` instead of governing a
second time (a second decision, and a second ledger row charged to the budget). The gateway
trusts nothing it cannot check: the decision must be recorded, the tenant's, active, and made for
the very action the call is (kind, tool or tier, principal, data classes, and the run and step
when the check named them). Whether it allows, and its obligations, the gateway enforces as ever.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from aob.errors import GovernanceMismatch
from aob.metering.models import ReservationId
from aob.policy._models import PolicyDecision, PolicyInput
from aob.policy._record import DecisionReader, RecordedDecision, input_summary

# What names an action, per kind; argument values are not stored, so they cannot be compared.
_ACTION_KEYS = ("kind", "tool", "tier", "model", "destination", "node")


class StepGovernance(BaseModel):
    """Explicit mode: the governed step's CheckPolicy decision and ReserveTokens reservation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision_id: UUID = Field(description="the decision the step's CheckPolicy state recorded")
    reservation_id: ReservationId = Field(
        description="the step's ReserveTokens reservation; the state machine settles it, not the gateway"
    )


def _mismatches(found: RecordedDecision, request: PolicyInput) -> list[str]:
    asked = input_summary(request)
    stored: dict[str, Any] = found.summary.get("action") or {}
    problems = [
        f"{key} {stored.get(key)!r}, not {asked['action'].get(key)!r}"
        for key in _ACTION_KEYS
        if stored.get(key) != asked["action"].get(key)
    ]
    if found.summary.get("principal") != asked["principal"]:
        problems.append(f"another principal than {request.principal.subject}")
    unchecked = sorted(set(asked["action"].get("data_classes", [])) - set(stored.get("data_classes", [])))
    if unchecked:
        problems.append(f"data classes {unchecked} were not checked")
    for name in ("run_id", "step_id"):
        made_for = getattr(found.decision, name)
        if made_for is not None and made_for != getattr(request, name):
            problems.append(f"{name} {made_for}, not {getattr(request, name)}")
    return problems


def governing_decision(
    decisions: DecisionReader, request: PolicyInput, governance: StepGovernance
) -> PolicyDecision:
    """The recorded decision that governs this call; GovernanceMismatch unless it was made for it."""
    decision_id = governance.decision_id
    found = decisions.get(request.tenant_id, decision_id)
    if found is None:
        raise GovernanceMismatch(
            f"governance.decision_id: {decision_id} is no policy decision of tenant {request.tenant_id}; "
            "pass the decision the step's CheckPolicy state recorded"
        )
    problems = _mismatches(found, request)
    if problems:
        raise GovernanceMismatch(
            f"governance.decision_id: decision {decision_id} was not made for this call "
            f"({'; '.join(problems)}); pass the decision the step's CheckPolicy state recorded"
        )
    return found.decision

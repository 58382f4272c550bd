"""Explicit mode's gateway calls: the state machine's recorded decision is verified and used, never
a second policy evaluation, reservation or settlement (which would charge the budget twice).

Postgres, Redis and real decisions are exercised in tests/integration/test_explicit_governance.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aob.errors import ApprovalRequired, GovernanceMismatch, InvalidInput, PolicyDenied
from aob.handlers import parse_event
from aob.llm import Admission, ChatRequest, ModelGateway, ModelRoutes, Probe
from aob.metering import Reservation, ReserveRequest, SettleRequest
from aob.policy import ModelAction, PolicyDecision, PolicyInput, RecordedDecision, ToolAction
from aob.policy._record import input_summary
from aob.tools import ToolCall, ToolGateway, ToolRegistry
from aob.tools._idempotency import Executed
from aob.tools.builtins import BUILTINS

PRINCIPAL = {"subject": "user:ops-1", "roles": ["operator"]}
RUN, STEP = uuid.uuid4(), uuid.uuid4()
ROUTES = ModelRoutes.model_validate(
    {
        "providers": [{"name": "primary", "kind": "vllm", "base_url": "http://primary.test/v1"}],
        "tiers": {
            "small": {"targets": [{"provider": "primary", "model": "tiny"}]},
            "large": {"targets": [{"provider": "primary", "model": "big"}]},
        },
    }
)


class Decisions:
    """policy_decisions in memory: what CheckPolicy recorded, by (tenant, decision id)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, uuid.UUID], RecordedDecision] = {}

    def add(
        self,
        action: dict[str, Any],
        *,
        tenant: str = "acme",
        allow: bool = True,
        principal: dict[str, Any] = PRINCIPAL,
        **options: Any,
    ) -> uuid.UUID:
        asked = PolicyInput.model_validate(
            {"tenant_id": tenant, "principal": principal, "action": action} | options.pop("ids", {})
        )
        decision = PolicyDecision(
            decision_id=uuid.uuid4(),
            bundle_digest="sha256:test",
            allow=allow,
            reasons=[] if allow else ["tool not allowed for this role"],
            obligations=options.pop("obligations", {}),
            tenant_id=tenant,
            run_id=asked.run_id,
            step_id=asked.step_id,
        )
        self.rows[(tenant, decision.decision_id)] = RecordedDecision(decision, input_summary(asked))
        return decision.decision_id

    def get(self, tenant_id: str, decision_id: uuid.UUID) -> RecordedDecision | None:
        return self.rows.get((tenant_id, decision_id))


class NoPolicy:
    """Fails the test if the gateway evaluates the policy again."""

    def check(self, request: PolicyInput) -> PolicyDecision:
        raise AssertionError(f"policy evaluated again for {request.action}")

    def decide(self, request: PolicyInput) -> tuple[PolicyDecision, str]:
        raise AssertionError(f"policy evaluated again for {request.action}")

    def record(self, request: PolicyInput, input_sha256: str, decision: PolicyDecision) -> None:
        raise AssertionError("decision recorded again")


class Meter:
    def __init__(self) -> None:
        self.reserved: list[ReserveRequest] = []
        self.settled: list[SettleRequest] = []

    def reserve(self, request: ReserveRequest) -> Reservation:
        self.reserved.append(request)
        now = datetime.now(UTC)
        return Reservation(
            tenant_id=request.tenant_id,
            capability=request.capability,
            reservation_id=f"r{len(self.reserved)}",
            estimate_tokens=request.estimate_tokens,
            reserved_at=now,
            expires_at=now + timedelta(minutes=5),
        )

    def settle(self, request: SettleRequest) -> Any:
        self.settled.append(request)


class Runs:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def run(self, key: str, execute: Callable[[], Any], *, timeout_s: float) -> Executed:
        self.keys.append(key)
        return Executed(result=execute(), duration_ms=1.0, replayed=False)


CALCULATE = {"kind": "tool", "tool": "calculator", "args": {"expression": "2 + 3"}}


def tool_call(decision_id: uuid.UUID, **changes: Any) -> ToolCall:
    return ToolCall.model_validate(
        {
            "tenant_id": "acme",
            "principal": PRINCIPAL,
            "run_id": RUN,
            "step_id": STEP,
            "tool": "calculator",
            "args": {"expression": "2 + 3"},
            "governance": {"decision_id": decision_id, "reservation_id": "explicit-r1"},
        }
        | changes
    )


@pytest.fixture
def decisions() -> Decisions:
    return Decisions()


@pytest.fixture
def meter() -> Meter:
    return Meter()


@pytest.fixture
def runs() -> Runs:
    return Runs()


@pytest.fixture
def tools(decisions: Decisions, meter: Meter, runs: Runs) -> ToolGateway:
    return ToolGateway(ToolRegistry(BUILTINS), NoPolicy(), meter, runs, decisions=decisions)


def test_a_governed_tool_call_uses_the_recorded_decision_and_leaves_metering_to_the_state_machine(
    decisions, meter, runs, tools
) -> None:
    decision_id = decisions.add(CALCULATE, ids={"run_id": RUN, "step_id": STEP})

    answer = tools.call(tool_call(decision_id))

    assert answer.result == {"expression": "2 + 3", "value": 5.0}
    assert answer.decision_id == decision_id
    assert (meter.reserved, meter.settled) == ([], [])  # one ledger row: the state machine's
    assert len(runs.keys) == 1


def test_without_governance_the_gateway_still_decides_and_meters(decisions, meter, runs, tools) -> None:
    fused = tool_call(uuid.uuid4()).model_copy(update={"governance": None})

    with pytest.raises(AssertionError, match="policy evaluated again"):
        tools.call(fused)


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ({"action": CALCULATE, "tenant": "globex"}, "is no policy decision of tenant acme"),
        (
            {"action": {"kind": "tool", "tool": "issue_refund", "args": {"order_id": "o-1", "amount": 5}}},
            "tool 'issue_refund', not 'calculator'",
        ),
        ({"action": {"kind": "model", "tier": "small"}}, "kind 'model', not 'tool'"),
        ({"action": CALCULATE, "ids": {"run_id": RUN, "step_id": uuid.uuid4()}}, "step_id"),
        ({"action": CALCULATE, "ids": {"run_id": uuid.uuid4()}}, "run_id"),
        ({"action": CALCULATE, "principal": {"subject": "user:other"}}, "another principal"),
    ],
)
def test_a_decision_made_for_something_else_refuses_the_call_before_the_tool_runs(
    decisions, meter, runs, tools, stored: dict[str, Any], problem: str
) -> None:
    decision_id = decisions.add(stored.pop("action"), **stored)

    with pytest.raises(GovernanceMismatch, match=problem):
        tools.call(tool_call(decision_id))

    assert runs.keys == [] and meter.reserved == []


def test_an_unknown_decision_id_refuses_the_call(decisions, runs, tools) -> None:
    with pytest.raises(GovernanceMismatch, match="CheckPolicy"):
        tools.call(tool_call(uuid.uuid4()))

    assert runs.keys == []


def test_a_denied_decision_refuses_the_call(decisions, runs, tools) -> None:
    decision_id = decisions.add(CALCULATE, allow=False)

    with pytest.raises(PolicyDenied, match="tool not allowed for this role") as refused:
        tools.call(tool_call(decision_id))

    assert refused.value.decision_id == str(decision_id) and runs.keys == []


def test_the_recorded_obligations_are_enforced(decisions, runs, tools) -> None:
    needs = {
        "require_approval": {"approver_roles": ["approver"], "reason": "calculations need a second look"}
    }
    decision_id = decisions.add(CALCULATE, obligations=needs)

    with pytest.raises(ApprovalRequired, match="calculations need a second look; ask one of: approver"):
        tools.call(tool_call(decision_id))

    assert runs.keys == []


def test_data_classes_the_check_did_not_see_refuse_the_call(decisions, tools) -> None:
    decision_id = decisions.add(CALCULATE)

    with pytest.raises(GovernanceMismatch, match=r"data classes \['pci'\] were not checked"):
        tools.call(tool_call(decision_id, data_classes=["pci"]))


def test_a_malformed_governance_names_the_field() -> None:
    event = tool_call(uuid.uuid4()).model_dump(mode="json")
    event["governance"] = {"decision_id": "not-a-uuid", "reservation_id": "r1"}

    with pytest.raises(InvalidInput, match="governance.decision_id"):
        parse_event(ToolCall, event)


class Provider:
    name = "primary"

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        return {
            "id": "chatcmpl-1",
            "model": "tiny",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "refund"}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
        }

    def probe(self, timeout_s: float) -> Probe:
        raise AssertionError("the gateway never probes")


class Admit:
    def admit(self, provider: str, model: str, now_ms: int, trial_ms: int) -> Admission:
        return Admission(None, False, "0.32.0")

    def failed(self, provider: str, now_ms: int) -> str:
        return "closed"

    def succeeded(self, provider: str) -> None:
        return None


def chat(decision_id: uuid.UUID, tier: str = "small") -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "tenant_id": "acme",
            "principal": PRINCIPAL,
            "run_id": RUN,
            "step_id": STEP,
            "tier": tier,
            "messages": [{"role": "user", "content": "Classify: refund please"}],
            "governance": {"decision_id": decision_id, "reservation_id": "explicit-r2"},
        }
    )


def model_gateway(decisions: Decisions, meter: Meter, provider: Provider) -> ModelGateway:
    policy = NoPolicy()
    return ModelGateway(ROUTES, {"primary": provider}, Admit(), policy, policy, meter, decisions=decisions)


def test_a_governed_model_call_answers_without_deciding_recording_or_metering_again(decisions, meter) -> None:
    provider = Provider()
    decision_id = decisions.add(ModelAction(kind="model", tier="small").model_dump())

    result = model_gateway(decisions, meter, provider).complete(chat(decision_id))

    assert result.choices[0]["message"] == {"role": "assistant", "content": "refund"}
    assert (result.decision_id, result.reservation_id) == (decision_id, "explicit-r2")
    assert (meter.reserved, meter.settled) == ([], [])


@pytest.mark.parametrize(
    ("action", "allow", "error", "problem"),
    [
        ({"kind": "model", "tier": "small"}, True, GovernanceMismatch, "tier 'small', not 'large'"),
        (ToolAction(kind="tool", tool="calculator").model_dump(), True, GovernanceMismatch, "kind 'tool'"),
        ({"kind": "model", "tier": "large"}, False, PolicyDenied, "policy denied model tier large"),
    ],
)
def test_a_model_call_without_a_matching_allowing_decision_never_reaches_a_provider(
    decisions, meter, action: dict[str, Any], allow: bool, error: type[Exception], problem: str
) -> None:
    provider = Provider()
    decision_id = decisions.add(action, allow=allow)

    with pytest.raises(error, match=problem):
        model_gateway(decisions, meter, provider).complete(chat(decision_id, tier="large"))

    assert provider.bodies == [] and meter.reserved == []

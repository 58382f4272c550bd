"""ModelGateway's flow with in-memory ports: checks first, then reserve, route with fallback, settle.

The Redis breaker, the real policy service, metering and vLLM are exercised in
tests/integration/test_model_gateway.py; here each port is a small fake that records its calls.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aob.errors import (
    ModelRequestRejected,
    ModelUnavailable,
    PolicyDenied,
    PolicyEvaluationFailed,
    PromptTooLarge,
    QuotaExceeded,
    ServiceUnavailable,
    UnknownModelTier,
)
from aob.llm import Admission, ChatRequest, ModelGateway, ModelRoutes, Probe, ProviderFailure
from aob.metering.models import Reservation, ReserveRequest, Settlement, SettleRequest
from aob.policy import PolicyDecision, PolicyInput

ROUTES = ModelRoutes.model_validate(
    {
        "providers": [
            {"name": "primary", "kind": "vllm", "base_url": "http://primary.test/v1"},
            {"name": "backup", "kind": "openai_compatible", "base_url": "https://backup.test/v1"},
        ],
        "tiers": {
            "small": {
                "targets": [{"provider": "primary", "model": "tiny"}, {"provider": "backup", "model": "mini"}]
            },
            "tight": {"targets": [{"provider": "primary", "model": "tiny"}], "max_prompt_chars": 50},
        },
    }
)
TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}


def _answer(model: str, **extra: Any) -> dict[str, Any]:
    message = {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]}
    return {
        "id": "chatcmpl-1",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 7, "total_tokens": 47},
    } | extra


class FakeProvider:
    def __init__(self, name: str, *answers: dict[str, Any] | Exception) -> None:
        self.name = name
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def probe(self, timeout_s: float) -> Probe:
        raise AssertionError("the gateway never probes")


class FakeState:
    def __init__(self, **admissions: Admission) -> None:
        self.admissions = admissions
        self.events: list[tuple[str, str]] = []

    def admit(self, provider: str, model: str, now_ms: int, trial_ms: int) -> Admission:
        return self.admissions.get(provider, Admission(None, False, "0.32.0"))

    def failed(self, provider: str, now_ms: int) -> str:
        self.events.append(("failed", provider))
        return "closed"

    def succeeded(self, provider: str) -> None:
        self.events.append(("succeeded", provider))


class FakePolicy:
    def __init__(self, allow: bool = True, obligations: dict[str, Any] | None = None) -> None:
        self.allow, self.obligations = allow, obligations or {}
        self.checked: list[PolicyInput] = []
        self.decision_id = uuid.uuid4()

    def decide(self, request: PolicyInput) -> tuple[PolicyDecision, str]:
        self.checked.append(request)
        reasons = [] if self.allow else ["model tier small is not included in the free plan"]
        decision = PolicyDecision(
            decision_id=self.decision_id,
            bundle_digest="sha256:test",
            allow=self.allow,
            reasons=reasons,
            obligations=self.obligations,
            tenant_id=request.tenant_id,
        )
        return decision, "input-sha256"


class FakeRecorder:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.recorded: list[tuple[str, bool]] = []

    def record(self, request: PolicyInput, input_sha256: str, decision: PolicyDecision) -> None:
        if self.error is not None:
            raise self.error
        self.recorded.append((input_sha256, decision.allow))


class FakeMeter:
    def __init__(self) -> None:
        self.reserved: list[ReserveRequest] = []
        self.settled: list[SettleRequest] = []
        self.refusal: QuotaExceeded | None = None

    def reserve(self, request: ReserveRequest) -> Reservation:
        self.reserved.append(request)
        if self.refusal is not None:
            raise self.refusal
        now = datetime.now(UTC)
        return Reservation(
            tenant_id=request.tenant_id,
            capability=request.capability,
            reservation_id=f"r{len(self.reserved)}",
            estimate_tokens=request.estimate_tokens,
            reserved_at=now,
            expires_at=now,
        )

    def settle(self, request: SettleRequest) -> Settlement:
        self.settled.append(request)
        return Settlement.model_construct()


@dataclass
class Rig:
    gateway: ModelGateway
    policy: FakePolicy
    meter: FakeMeter
    state: FakeState
    recorder: FakeRecorder


def _rig(
    *providers: FakeProvider,
    state: FakeState | None = None,
    policy: FakePolicy | None = None,
    recorder: FakeRecorder | None = None,
) -> Rig:
    policy, meter, state, recorder = (
        policy or FakePolicy(),
        FakeMeter(),
        state or FakeState(),
        recorder or FakeRecorder(),
    )
    by_name = {name: FakeProvider(name) for name in ("primary", "backup")} | {p.name: p for p in providers}
    gateway = ModelGateway(ROUTES, by_name, state, policy, recorder, meter, default_max_tokens=64)
    return Rig(gateway, policy, meter, state, recorder)


def _request(**changes: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "tenant_id": "acme",
            "principal": {"subject": "user:ops-1", "roles": ["operator"]},
            "run_id": str(uuid.uuid4()),
            "tier": "small",
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "data_classes": ["internal"],
        }
        | changes
    )


def test_the_first_provider_answers_and_the_call_is_recorded_and_settled() -> None:
    primary = FakeProvider("primary", _answer("tiny"))
    rig = _rig(primary, FakeProvider("backup"))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    request = _request(tools=tools, tool_choice="auto", extra_body={"ignore_eos": True})

    result = rig.gateway.complete(request)

    assert result.choices[0]["message"]["tool_calls"] == [TOOL_CALL]
    assert (result.provider, result.model, result.model_version) == ("primary", "tiny", "0.32.0")
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (40, 7)
    assert (result.decision_id, result.reservation_id) == (rig.policy.decision_id, "r1")
    assert [(a.provider, a.outcome) for a in result.attempts] == [("primary", "ok")]
    assert primary.bodies == [
        {**request.prompt_body(), "model": "tiny", "max_tokens": 64, "extra_body": {"ignore_eos": True}}
    ]
    action = rig.policy.checked[0].action
    assert (action.kind, action.tier, action.data_classes) == ("model", "small", ["internal"])
    assert rig.meter.reserved[0].capability == "model_gateway" and rig.meter.reserved[0].estimate_tokens > 64
    settled = rig.meter.settled[0]
    assert (settled.reservation_id, settled.input_tokens, settled.output_tokens) == ("r1", 40, 7)
    assert (settled.model, settled.run_id) == ("tiny", request.run_id)
    assert rig.recorder.recorded == [("input-sha256", True)]


def test_a_retryable_failure_falls_back_to_the_next_provider_and_counts_against_its_breaker() -> None:
    primary = FakeProvider("primary", ProviderFailure("connection_error", "primary: ConnectError"))
    backup = FakeProvider("backup", _answer("mini", system_fingerprint="fp_42"))
    rig = _rig(primary, backup, state=FakeState(backup=Admission(None, False, None)))

    result = rig.gateway.complete(_request())

    assert (result.provider, result.model, result.model_version) == ("backup", "mini", "fp_42")
    assert [(a.provider, a.outcome) for a in result.attempts] == [
        ("primary", "connection_error"),
        ("backup", "ok"),
    ]
    assert backup.bodies[0]["model"] == "mini"
    assert rig.state.events == [("failed", "primary")]
    assert [s.input_tokens for s in rig.meter.settled] == [40]


@pytest.mark.parametrize("skip", ["breaker_open", "trial_in_progress", "not_ready", "model_not_served"])
def test_a_provider_ruled_out_by_its_breaker_or_probe_is_skipped_without_a_call(skip: str) -> None:
    primary, backup = FakeProvider("primary"), FakeProvider("backup", _answer("mini"))
    rig = _rig(primary, backup, state=FakeState(primary=Admission(skip, True, None)))  # type: ignore[arg-type]

    result = rig.gateway.complete(_request())

    assert primary.bodies == []
    assert [(a.provider, a.outcome, a.latency_ms) for a in result.attempts][0] == ("primary", skip, None)


def test_a_successful_trial_closes_the_breaker() -> None:
    primary = FakeProvider("primary", _answer("tiny"))
    rig = _rig(primary, state=FakeState(primary=Admission(None, True, None)))

    rig.gateway.complete(_request())

    assert rig.state.events == [("succeeded", "primary")]


def test_a_refused_request_is_not_retried_elsewhere_and_its_reservation_is_released() -> None:
    primary = FakeProvider(
        "primary", ModelRequestRejected("model request refused: primary answered HTTP 400")
    )
    backup = FakeProvider("backup", _answer("mini"))
    rig = _rig(primary, backup)

    with pytest.raises(ModelRequestRejected):
        rig.gateway.complete(_request())

    assert backup.bodies == [] and rig.state.events == []
    assert [(s.reservation_id, s.input_tokens, s.output_tokens) for s in rig.meter.settled] == [("r1", 0, 0)]


def test_when_every_provider_fails_the_error_is_transient_and_the_reservation_released() -> None:
    primary = FakeProvider("primary", ProviderFailure("timeout", "primary: no answer within 30 s"))
    backup = FakeProvider("backup", ProviderFailure("rate_limited", "backup answered HTTP 429"))
    rig = _rig(primary, backup)

    with pytest.raises(
        ModelUnavailable, match=r"tier small answered \(primary/tiny: timeout; backup/mini: rate_limited\)"
    ):
        rig.gateway.complete(_request())

    assert [(s.input_tokens, s.output_tokens) for s in rig.meter.settled] == [(0, 0)]


def test_an_unknown_tier_is_refused_before_any_decision_or_reservation() -> None:
    rig = _rig(FakeProvider("primary"))

    with pytest.raises(UnknownModelTier, match="configured tiers: small, tight"):
        rig.gateway.complete(_request(tier="huge"))

    assert rig.policy.checked == [] and rig.meter.reserved == []


def test_an_oversized_prompt_is_refused_naming_the_limit_before_any_decision_or_reservation() -> None:
    rig = _rig(FakeProvider("primary"))

    with pytest.raises(PromptTooLarge, match="over the limit of 50 for tier tight"):
        rig.gateway.complete(_request(tier="tight", messages=[{"role": "user", "content": "x" * 60}]))

    assert rig.policy.checked == [] and rig.meter.reserved == []


def test_a_policy_denial_names_the_decision_and_reserves_nothing() -> None:
    rig = _rig(FakeProvider("primary"), policy=FakePolicy(allow=False))

    with pytest.raises(PolicyDenied, match="not included in the free plan") as denied:
        rig.gateway.complete(_request())

    assert denied.value.decision_id == str(rig.policy.decision_id)
    assert rig.recorder.recorded == [("input-sha256", False)]
    assert rig.meter.reserved == []


def test_obligations_a_model_call_cannot_honour_refuse_it() -> None:
    policy = FakePolicy(obligations={"require_approval": {"approver_roles": ["admin"]}})
    rig = _rig(FakeProvider("primary"), policy=policy)

    with pytest.raises(PolicyEvaluationFailed, match=r"cannot honour obligations \['require_approval'\]"):
        rig.gateway.complete(_request())

    assert rig.recorder.recorded == [("input-sha256", True)] and rig.meter.reserved == []


def test_a_quota_refusal_still_records_the_decision_and_calls_no_provider() -> None:
    primary = FakeProvider("primary", _answer("tiny"))
    rig = _rig(primary)
    rig.meter.refusal = QuotaExceeded("tenant.tokens_per_day quota exceeded", retry_after=60, scope="tenant")

    with pytest.raises(QuotaExceeded):
        rig.gateway.complete(_request())

    assert rig.recorder.recorded == [("input-sha256", True)]
    assert primary.bodies == [] and rig.meter.settled == []


def test_an_answer_whose_decision_cannot_be_recorded_is_withheld_but_its_usage_charged() -> None:
    recorder = FakeRecorder(ServiceUnavailable("could not record policy decision"))
    rig = _rig(FakeProvider("primary", _answer("tiny")), recorder=recorder)

    with pytest.raises(ServiceUnavailable, match="could not record policy decision"):
        rig.gateway.complete(_request())

    assert [(s.input_tokens, s.output_tokens) for s in rig.meter.settled] == [(40, 7)]

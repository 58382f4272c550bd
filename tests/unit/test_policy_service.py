"""PolicyService: enforce the active bundle, shadow the candidate, record both, cache evaluations."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aob.errors import InvalidInput, PolicyEvaluationFailed, UnknownTenant
from aob.handlers import parse_event
from aob.policy import (
    Evaluation,
    PolicyBundle,
    PolicyBundleStore,
    PolicyDecision,
    PolicyInput,
    PolicyService,
    RegoPolicyEngine,
    policy_files,
    sign_bundle,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()
ACTIVE = sign_bundle(policy_files(ROOT / "policies"), KEY, "ops")
# The candidate lowers the refund approval threshold from 100 to 50.
_data = json.loads(policy_files(ROOT / "policies")["data.json"])
_data["aob"]["catalog"]["approvals"]["issue_refund"]["above"] = 50
CANDIDATE = sign_bundle(
    {**policy_files(ROOT / "policies"), "data.json": json.dumps(_data).encode()}, KEY, "ops"
)


@dataclass(frozen=True)
class Tenant:
    plan: str
    status: str = "active"


class Tenants:
    def __init__(self) -> None:
        self.known = {"acme": Tenant("pro"), "tiny": Tenant("free")}

    def __call__(self, tenant_id: str) -> Tenant:
        if tenant_id not in self.known:
            raise UnknownTenant(f"tenant_id: no tenant {tenant_id!r}")
        return self.known[tenant_id]


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[PolicyInput, str, PolicyDecision]] = []

    def record(self, request: PolicyInput, input_sha256: str, decision: PolicyDecision) -> None:
        self.records.append((request, input_sha256, decision))


class CountingEngine(RegoPolicyEngine):
    def __init__(self, bundle: PolicyBundle) -> None:
        self.evaluations = 0  # before compiling: the engine evaluates a probe input then
        super().__init__(bundle)

    def evaluate(self, document: Mapping[str, Any]) -> Evaluation:
        self.evaluations += 1
        return super().evaluate(document)


class BrokenEngine(CountingEngine):
    def evaluate(self, document: Mapping[str, Any]) -> Evaluation:
        if self.evaluations >= 1:  # the store's probe passes; requests fail
            raise PolicyEvaluationFailed("candidate exploded")
        return super().evaluate(document)


def refund(amount: float, tenant_id: str = "acme", roles: tuple[str, ...] = ("operator",)) -> PolicyInput:
    return PolicyInput.model_validate(
        {
            "tenant_id": tenant_id,
            "principal": {"subject": "user-1", "roles": list(roles)},
            "action": {"kind": "tool", "tool": "issue_refund", "args": {"amount": amount}},
            "run_id": str(uuid.uuid4()),
        }
    )


@pytest.fixture
def tenants() -> Tenants:
    return Tenants()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def service(
    recorder: Recorder,
    tenants: Tenants,
    engine: type[CountingEngine] = CountingEngine,
    candidate: type[CountingEngine] | None = None,
) -> tuple[PolicyService, list[CountingEngine]]:
    """A service over the shipped policies (and the candidate, if given), and its engines."""
    engines: list[CountingEngine] = []

    def factory(bundle: PolicyBundle) -> CountingEngine:
        engines.append((engine if not engines else candidate or engine)(bundle))
        return engines[-1]

    store = PolicyBundleStore({"ops": KEY.public_key()}, engine_factory=factory)
    store.load(ACTIVE)
    if candidate:
        store.load(CANDIDATE, "candidate")
    return PolicyService(store, recorder, tenants), engines


def test_a_check_returns_and_records_the_active_decision(recorder: Recorder, tenants: Tenants) -> None:
    request = refund(80)
    decision = service(recorder, tenants)[0].check(request)

    assert decision.allow is True
    assert decision.obligations == {}
    assert (decision.tenant_id, decision.run_id) == ("acme", request.run_id)
    assert decision.bundle_digest.startswith("sha256:")
    assert decision.shadow is None and decision.shadow_disagrees is False
    [(recorded_request, input_sha256, recorded)] = recorder.records
    assert recorded_request is request and recorded == decision and len(input_sha256) == 64


def test_a_deny_is_a_decision_not_an_error(recorder: Recorder, tenants: Tenants) -> None:
    decision = service(recorder, tenants)[0].check(refund(80, roles=("viewer",)))

    assert decision.allow is False
    assert decision.reasons == ["user-1 has no role allowed to call tool issue_refund"]
    assert len(recorder.records) == 1


def test_the_tenant_plan_comes_from_the_tenant_record(recorder: Recorder, tenants: Tenants) -> None:
    decision = service(recorder, tenants)[0].check(refund(80, tenant_id="tiny"))

    assert decision.reasons == ["tool issue_refund is not available on the free plan"]


def test_repeated_checks_reuse_one_evaluation_but_get_their_own_ids(
    recorder: Recorder, tenants: Tenants
) -> None:
    checker, [engine] = service(recorder, tenants)
    probed = engine.evaluations

    first, second = checker.check(refund(80)), checker.check(refund(80))
    tenants.known["acme"] = Tenant("pro", status="suspended")
    third = checker.check(refund(80))

    assert engine.evaluations - probed == 2  # the run id differs, but only a new tenant status misses
    assert first.decision_id != second.decision_id
    assert (first.allow, second.allow, third.allow) == (True, True, False)
    assert recorder.records[0][1] == recorder.records[1][1] != recorder.records[2][1]


def test_a_cached_decision_cannot_be_changed_through_a_returned_one(
    recorder: Recorder, tenants: Tenants
) -> None:
    checker, _ = service(recorder, tenants)
    first = checker.check(refund(500))
    first.obligations["require_approval"]["approver_roles"].append("intern")  # type: ignore[index, union-attr]

    assert checker.check(refund(500)).obligations["require_approval"]["approver_roles"] == [  # type: ignore[index]
        "approver",
        "admin",
    ]


def test_the_candidate_is_recorded_beside_but_never_enforced(recorder: Recorder, tenants: Tenants) -> None:
    decision = service(recorder, tenants, candidate=CountingEngine)[0].check(refund(80))

    assert decision.allow is True and decision.obligations == {}  # the active bundle's answer
    assert decision.shadow is not None
    assert decision.shadow.obligations["require_approval"]["reason"] == (  # type: ignore[index, call-overload]
        "issue_refund with amount 80 needs approval above 50"
    )
    assert decision.shadow_disagrees is True
    assert decision.shadow.decision_id != decision.decision_id
    assert recorder.records[0][2].shadow == decision.shadow


def test_an_agreeing_candidate_is_not_flagged(recorder: Recorder, tenants: Tenants) -> None:
    decision = service(recorder, tenants, candidate=CountingEngine)[0].check(refund(20))

    assert decision.shadow is not None and decision.shadow_disagrees is False


def test_a_failing_candidate_leaves_enforcement_alone(recorder: Recorder, tenants: Tenants) -> None:
    checker, _ = service(recorder, tenants, candidate=BrokenEngine)

    decision = checker.check(refund(80))

    assert decision.allow is True and decision.shadow is None


def test_a_failing_active_bundle_decides_nothing_and_records_nothing(
    recorder: Recorder, tenants: Tenants
) -> None:
    checker, _ = service(recorder, tenants, engine=BrokenEngine)

    with pytest.raises(PolicyEvaluationFailed):
        checker.check(refund(80))
    assert recorder.records == []


def test_an_unknown_tenant_is_refused_before_evaluation(recorder: Recorder, tenants: Tenants) -> None:
    with pytest.raises(UnknownTenant):
        service(recorder, tenants)[0].check(refund(80, tenant_id="ghost"))
    assert recorder.records == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"surprise": 1}, "surprise"),
        ({"tenant_id": "Not A Slug"}, "tenant_id"),
        ({"action": {"kind": "teleport"}}, "action"),
        ({"action": {"kind": "tool", "tool": "issue_refund", "args": {"amount": 2**63}}}, "action.tool.args"),
        (
            {"action": {"kind": "tool", "tool": "issue_refund", "args": {"amount": float("nan")}}},
            "action.tool.args",
        ),
        (
            {"action": {"kind": "tool", "tool": "issue_refund", "args": {"note": "a\x00b"}}},
            "action.tool.args",
        ),
        (
            {"action": {"kind": "tool", "tool": "issue_refund", "args": {"card.number": "1"}}},
            "action.tool.args",
        ),
        ({"action": {"kind": "tool", "tool": 'x"y'}}, "action.tool.tool"),
        ({"principal": {"subject": "user-1", "roles": ["ad min"]}}, "principal.roles.0"),
    ],
    ids=["extra", "tenant", "kind", "huge-int", "nan", "nul", "dotted-arg", "quoted-tool", "role"],
)
def test_malformed_input_names_the_field(change: dict[str, Any], field: str) -> None:
    event = json.loads((ROOT / "tests" / "events" / "policy_allow.json").read_text()) | change

    with pytest.raises(InvalidInput, match=rf"invalid PolicyInput input: {field}\b"):
        parse_event(PolicyInput, event)


@pytest.mark.parametrize(("event", "allow"), [("policy_allow.json", True), ("policy_deny.json", False)])
def test_the_sample_events_decide_as_named(
    recorder: Recorder, tenants: Tenants, event: str, allow: bool
) -> None:
    request = parse_event(PolicyInput, json.loads((ROOT / "tests" / "events" / event).read_text()))

    assert service(recorder, tenants)[0].check(request).allow is allow

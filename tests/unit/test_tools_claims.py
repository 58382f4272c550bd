"""The claim check in the tool gateway: large results go to a claim store, claims in arguments come back."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aob.errors import ConfigurationError, InvalidToolArguments
from aob.metering import Reservation, ReserveRequest, SettleRequest
from aob.policy import PolicyDecision, PolicyInput
from aob.recorder import RecordStepRequest
from aob.tools import ToolCall, ToolGateway, ToolRegistry
from aob.tools._claims import CLAIM, MemoryClaimStore
from aob.tools._idempotency import Executed
from aob.tools.builtins import BUILTINS

RUN, OTHER_RUN = uuid.uuid4(), uuid.uuid4()
SESSION = "sess-claims-1"
BIG = {"topic": "sales", "sections": 200, "words_per_section": 100}  # about 120 KB of JSON


class Allow:
    def __init__(self) -> None:
        self.inputs: list[PolicyInput] = []

    def check(self, request: PolicyInput) -> PolicyDecision:
        self.inputs.append(request)
        return PolicyDecision(
            decision_id=uuid.uuid4(),
            bundle_digest="sha256:test",
            allow=True,
            reasons=[],
            obligations={},
            tenant_id=request.tenant_id,
        )


class Meter:
    def reserve(self, request: ReserveRequest) -> Reservation:
        now = datetime.now(UTC)
        return Reservation(
            tenant_id=request.tenant_id,
            capability=request.capability,
            reservation_id=uuid.uuid4().hex,
            estimate_tokens=0,
            reserved_at=now,
            expires_at=now + timedelta(minutes=5),
        )

    def settle(self, request: SettleRequest) -> Any:
        return None


class RunEveryTime:
    def run(self, key: str, execute: Callable[[], Any], *, timeout_s: float) -> Executed:
        return Executed(result=execute(), duration_ms=1.0, replayed=False)


class Recorder:
    def __init__(self) -> None:
        self.requests: list[RecordStepRequest] = []

    def record_step(self, request: RecordStepRequest) -> Any:
        self.requests.append(request)


@pytest.fixture
def store() -> MemoryClaimStore:
    return MemoryClaimStore("aob-artifacts-test")


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def policy() -> Allow:
    return Allow()


def gateway(store: MemoryClaimStore | None, recorder: Recorder, policy: Allow, **options: Any) -> ToolGateway:
    return ToolGateway(
        ToolRegistry(BUILTINS), policy, Meter(), RunEveryTime(), recorder=recorder, claims=store, **options
    )


def call(tool: str, args: dict[str, Any], tenant: str = "acme", run: uuid.UUID = RUN) -> ToolCall:
    return ToolCall.model_validate(
        {
            "tenant_id": tenant,
            "principal": {"subject": "user:ops-1", "roles": ["operator"]},
            "run_id": run,
            "step_id": uuid.uuid4(),
            "tool": tool,
            "args": args,
            "record": {"node": tool, "session_id": SESSION, "fencing_token": 1},
        }
    )


def test_a_large_result_is_stored_whole_and_the_state_gets_its_claim(store, recorder, policy) -> None:
    produce = call("generate_report", BIG)
    answer = gateway(store, recorder, policy).call(produce)

    assert answer.claimed and not answer.truncated
    claim = answer.result[CLAIM]  # type: ignore[index, call-overload]
    body = store.objects[claim["key"]]
    assert claim == {
        "bucket": "aob-artifacts-test",
        "key": f"claims/acme/{RUN}/{produce.step_id}/{hashlib.sha256(body).hexdigest()}.json",
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "media_type": "application/json",
    }
    report = json.loads(body)
    assert len(report["sections"]) == 200 and len(body) > 64 * 1024
    assert len(answer.model_dump_json()) < 2048  # what travels through the state machine
    # The DecisionRecord keeps the claim, not the payload.
    assert recorder.requests[0].result["result"] == answer.result  # type: ignore[index]


def test_a_retry_writes_the_same_object(store, recorder, policy) -> None:
    produce = call("generate_report", BIG)
    first = gateway(store, recorder, policy).call(produce)
    again = gateway(store, recorder, policy).call(produce)

    assert first.result == again.result and len(store.objects) == 1


def test_a_small_result_stays_inline(store, recorder, policy) -> None:
    answer = gateway(store, recorder, policy).call(call("calculator", {"expression": "2 + 3"}))

    assert answer.result == {"expression": "2 + 3", "value": 5.0}
    assert not answer.claimed and store.objects == {}


def test_without_a_claim_store_a_large_result_is_cut_as_before(recorder, policy) -> None:
    answer = gateway(None, recorder, policy, max_result_bytes=1000).call(call("generate_report", BIG))

    assert answer.truncated and not answer.claimed
    assert isinstance(answer.result, str) and len(answer.result.encode()) == 1000


def test_a_claim_in_the_arguments_reaches_the_tool_as_its_content(store, recorder, policy) -> None:
    tools = gateway(store, recorder, policy)
    produced = tools.call(call("generate_report", BIG))
    report = json.loads(store.objects[produced.result[CLAIM]["key"]])  # type: ignore[index, call-overload]

    # The next node passes `$.generate.result`, the claim.
    consume = call("report_stats", {"report": produced.result})
    stats = tools.call(consume)

    assert stats.result == {
        "sections": 200,
        "words": 200 * 100,
        "sha256": hashlib.sha256(json.dumps(report, separators=(",", ":")).encode()).hexdigest(),
    }
    assert policy.inputs[-1].action.args["report"] == report  # type: ignore[union-attr]
    # The consumer's record names the claim it read, as the explicit mode's record does.
    assert recorder.requests[-1].call["args"] == {"report": produced.result}


def test_a_claim_of_another_tenant_is_refused(store, recorder, policy) -> None:
    tools = gateway(store, recorder, policy)
    theirs = tools.call(call("generate_report", BIG, tenant="globex"))

    with pytest.raises(
        InvalidToolArguments,
        match=r"tool report_stats: report: the claim is not under s3://aob-artifacts-test/claims/acme/",
    ):
        tools.call(call("report_stats", {"report": theirs.result}))


def test_a_claim_whose_key_is_edited_to_the_tenants_prefix_is_refused(store, recorder, policy) -> None:
    tools = gateway(store, recorder, policy)
    theirs = tools.call(call("generate_report", BIG, tenant="globex"))
    claim = dict(theirs.result[CLAIM])  # type: ignore[index, call-overload]
    claim["key"] = claim["key"].replace("claims/globex/", "claims/acme/../globex/")

    with pytest.raises(InvalidToolArguments, match=r"report: the claim is not under"):
        tools.call(call("report_stats", {"report": {CLAIM: claim}}))


def test_tampered_content_is_refused(store, recorder, policy) -> None:
    tools = gateway(store, recorder, policy)
    produced = tools.call(call("generate_report", BIG))
    key = produced.result[CLAIM]["key"]  # type: ignore[index, call-overload]
    store.objects[key] = store.objects[key].replace(b"steady", b"stormy")

    with pytest.raises(InvalidToolArguments, match=r"report: the content of claims/acme/.* does not match"):
        tools.call(call("report_stats", {"report": produced.result}))


def test_a_missing_object_and_a_malformed_claim_are_refused_naming_the_argument(
    store, recorder, policy
) -> None:
    tools = gateway(store, recorder, policy)
    produced = tools.call(call("generate_report", BIG))
    store.objects.clear()

    with pytest.raises(InvalidToolArguments, match=r"report: no claimed object claims/acme/"):
        tools.call(call("report_stats", {"report": produced.result}))
    with pytest.raises(InvalidToolArguments, match=r"report: not a valid claim"):
        tools.call(call("report_stats", {"report": {CLAIM: {"key": "claims/acme/x"}}}))


def test_a_claim_without_a_claim_store_is_a_configuration_error(recorder, policy) -> None:
    claim = {CLAIM: {"bucket": "b", "key": "k", "bytes": 1, "sha256": "0" * 64}}

    with pytest.raises(ConfigurationError, match="set AOB_CLAIMS_BUCKET"):
        gateway(None, recorder, policy).call(call("report_stats", {"report": claim}))

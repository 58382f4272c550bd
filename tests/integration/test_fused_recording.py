"""Fused mode: the gateways write each step's DecisionRecord themselves when the call carries `record`.

Tool gateway for real (the repo's policies signed here, Redis metering and idempotency, Postgres);
the model gateway with in-memory providers and policy but the real Recorder on Postgres.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from aob.errors import PolicyDenied, StaleFencingToken
from aob.llm import ChatRequest, ModelGateway
from aob.metering import Metering, RedisQuotaStore, UsageLedger
from aob.policy import PolicyBundleStore, PolicyService, PostgresDecisionRecorder, policy_files, sign_bundle
from aob.recorder import Recorder
from aob.tenants import create_tenant, get_tenant
from aob.tools import IdempotentCalls, ToolCall, ToolGateway, ToolRegistry, get_http_client
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg_pool import ConnectionPool

from tests.support import insert_run
from tests.unit.test_llm_gateway import ROUTES, FakeMeter, FakePolicy, FakeProvider, FakeRecorder, FakeState

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()
BUNDLE = sign_bundle(policy_files(ROOT / "policies"), KEY, "test")
STEP = """
SELECT state_name, kind, attempt, status, finished_at IS NOT NULL
FROM steps WHERE tenant_id = %s AND step_id = %s
"""


def start_run(pool: ConnectionPool) -> tuple[str, uuid.UUID]:
    tenant_id = f"fused-{uuid.uuid4().hex[:8]}"
    create_tenant(tenant_id, plan="pro")
    with pool.connection() as conn:
        return tenant_id, insert_run(conn, tenant_id, "triage")


def record(node: str, fencing_token: int = 3) -> dict[str, Any]:
    return {"node": node, "session_id": "session-1", "fencing_token": fencing_token}


@pytest.fixture
def tool_gateway(db_pool: ConnectionPool, redis_client: redis.Redis, redis_key_prefix: str) -> ToolGateway:
    store = PolicyBundleStore({"test": KEY.public_key()})
    store.load(BUNDLE)
    return ToolGateway(
        ToolRegistry.load(None, get_http_client),
        PolicyService(store, PostgresDecisionRecorder(db_pool), get_tenant),
        Metering(RedisQuotaStore(redis_client, key_prefix=redis_key_prefix), UsageLedger(db_pool)),
        IdempotentCalls(redis_client, key_prefix=redis_key_prefix),
        recorder=Recorder(db_pool),
    )


def tool_call(tenant_id: str, run_id: uuid.UUID, tool: str, roles: list[str], **fields: Any) -> ToolCall:
    return ToolCall.model_validate(
        {
            "tenant_id": tenant_id,
            "principal": {"subject": "user:ops-1", "roles": roles},
            "run_id": run_id,
            "step_id": uuid.uuid4(),  # as the state machine makes them: no steps row yet
            "tool": tool,
        }
        | fields
    )


def test_a_fused_tool_call_records_its_step_once_and_the_chain_verifies(
    tool_gateway: ToolGateway, db_pool: ConnectionPool
) -> None:
    tenant_id, run_id = start_run(db_pool)
    recorder = Recorder(db_pool)
    call = tool_call(
        tenant_id,
        run_id,
        "lookup_order",
        ["viewer"],
        args={"order_id": "o-1003"},
        record=record("lookup_order"),
    )

    answer = tool_gateway.call(call)
    retried = tool_gateway.call(call)  # Step Functions retried the task: replayed, recorded once

    records = recorder.list_records(tenant_id, run_id)
    assert retried.replayed and len(records) == 1
    stored = records[0].record
    assert (stored.step_id, stored.node.name, stored.node.kind, stored.outcome) == (
        call.step_id,
        "lookup_order",
        "tool",
        "succeeded",
    )
    assert stored.tool is not None and stored.tool.name == "lookup_order"
    assert stored.tool.input == {"order_id": "o-1003"}
    assert stored.tool.output == answer.result
    assert stored.policy.decision_ids == [str(answer.decision_id)]
    assert stored.policy.bundle_digest
    assert stored.timings.ended_at >= stored.timings.started_at
    with db_pool.connection() as conn:
        assert conn.execute(STEP, (tenant_id, call.step_id)).fetchone() == (
            "lookup_order",
            "tool",
            1,
            "succeeded",
            True,
        )
    assert recorder.verify_chain(tenant_id, run_id).ok

    with db_pool.connection() as conn, conn.transaction():
        conn.execute("ALTER TABLE decision_records DISABLE TRIGGER decision_records_append_only")
        conn.execute(
            "UPDATE decision_records SET record = jsonb_set(record, '{tool,output}', '\"forged\"')"
            " WHERE tenant_id = %s AND run_id = %s",
            (tenant_id, run_id),
        )
        conn.execute("ALTER TABLE decision_records ENABLE TRIGGER decision_records_append_only")
    report = recorder.verify_chain(tenant_id, run_id)
    assert (report.ok, report.first_bad_seq) == (False, 1)


def test_a_denied_fused_tool_call_is_recorded_before_the_denial_is_raised(
    tool_gateway: ToolGateway, db_pool: ConnectionPool
) -> None:
    tenant_id, run_id = start_run(db_pool)
    call = tool_call(
        tenant_id, run_id, "calculator", ["guest"], args={"expression": "1 + 1"}, record=record("add")
    )

    with pytest.raises(PolicyDenied) as denied:
        tool_gateway.call(call)

    (stored,) = Recorder(db_pool).list_records(tenant_id, run_id)
    assert (stored.record.node.name, stored.record.outcome) == ("add", "denied")
    assert stored.record.policy.decision_ids == [denied.value.decision_id]
    assert stored.record.error == {"error": "PolicyDenied", "reasons": denied.value.reasons}


def test_a_tool_call_without_record_records_nothing(
    tool_gateway: ToolGateway, db_pool: ConnectionPool
) -> None:
    tenant_id, run_id = start_run(db_pool)

    tool_gateway.call(tool_call(tenant_id, run_id, "calculator", ["viewer"], args={"expression": "2 * 3"}))

    assert Recorder(db_pool).list_records(tenant_id, run_id) == []


def test_a_fused_tool_call_under_a_lost_lease_is_refused(
    tool_gateway: ToolGateway, db_pool: ConnectionPool
) -> None:
    tenant_id, run_id = start_run(db_pool)
    fields = {"args": {"expression": "2 * 3"}}
    tool_gateway.call(tool_call(tenant_id, run_id, "calculator", ["viewer"], record=record("a", 5), **fields))

    with pytest.raises(StaleFencingToken):
        tool_gateway.call(
            tool_call(tenant_id, run_id, "calculator", ["viewer"], record=record("b", 4), **fields)
        )

    assert [r.record.node.name for r in Recorder(db_pool).list_records(tenant_id, run_id)] == ["a"]


def chat(tenant_id: str, run_id: uuid.UUID, **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {
            "tenant_id": tenant_id,
            "principal": {"subject": "user:ops-1", "roles": ["operator"]},
            "run_id": run_id,
            "step_id": uuid.uuid4(),
            "tier": "small",
            "messages": [{"role": "user", "content": "Classify: where is my refund?"}],
            "record": record("classify"),
        }
        | fields
    )


def model_gateway(pool: ConnectionPool, policy: FakePolicy, *answers: dict[str, Any]) -> ModelGateway:
    providers = {"primary": FakeProvider("primary", *answers), "backup": FakeProvider("backup")}
    return ModelGateway(
        ROUTES, providers, FakeState(), policy, FakeRecorder(), FakeMeter(), step_recorder=Recorder(pool)
    )


def test_a_fused_model_call_records_the_reply_model_usage_and_decision(db_pool: ConnectionPool) -> None:
    tenant_id, run_id = start_run(db_pool)
    reply = {"role": "assistant", "content": "refund"}
    answer = {
        "id": "chatcmpl-1",
        "model": "tiny",
        "system_fingerprint": "v0.9",
        "choices": [{"index": 0, "message": reply, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
    }
    policy = FakePolicy()
    request = chat(tenant_id, run_id)

    model_gateway(db_pool, policy, answer).complete(request)

    (stored,) = Recorder(db_pool).list_records(tenant_id, run_id)
    record_ = stored.record
    assert (record_.node.name, record_.node.kind, record_.outcome) == ("classify", "model", "succeeded")
    assert record_.messages == [{"role": "user", "content": "Classify: where is my refund?"}]
    assert record_.output == reply
    assert record_.model is not None and record_.model.name == "tiny"
    assert (record_.usage.input_tokens, record_.usage.output_tokens) == (12, 1)
    assert record_.policy.decision_ids == [str(policy.decision_id)]
    assert Recorder(db_pool).verify_chain(tenant_id, run_id).ok


def test_a_denied_fused_model_call_is_recorded_and_nothing_is_called(db_pool: ConnectionPool) -> None:
    tenant_id, run_id = start_run(db_pool)

    with pytest.raises(PolicyDenied):
        model_gateway(db_pool, FakePolicy(allow=False)).complete(chat(tenant_id, run_id))

    (stored,) = Recorder(db_pool).list_records(tenant_id, run_id)
    assert (stored.record.outcome, stored.record.error) == (
        "denied",
        {"error": "PolicyDenied", "reasons": ["model tier small is not included in the free plan"]},
    )


def test_a_recorded_model_call_must_name_its_run_and_step() -> None:
    with pytest.raises(ValueError, match="record needs run_id and step_id"):
        chat("acme", uuid.uuid4(), step_id=None)

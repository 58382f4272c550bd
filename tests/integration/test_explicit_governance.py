"""Explicit mode's governed tool step, its states played in order against Postgres and Redis:
CheckPolicy -> ReserveTokens -> the gateway call (with `governance`) -> SettleTokens.

The gateway uses the recorded decision instead of a second one, and leaves metering to the
state machine: one decision and one ledger row per call, so the budget is charged once.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from aob.errors import GovernanceMismatch
from aob.metering import Metering, RedisQuotaStore, ReserveRequest, SettleRequest, UsageLedger
from aob.policy import PolicyBundleStore, PolicyInput, PolicyService, PostgresDecisionRecorder
from aob.tenants import get_tenant
from aob.tools import IdempotentCalls, ToolCall, ToolGateway, ToolRegistry, get_http_client
from psycopg_pool import ConnectionPool

from tests.integration.test_fused_recording import BUNDLE, KEY, start_run

pytestmark = pytest.mark.integration

PRINCIPAL = {"subject": "user:ops-1", "roles": ["viewer"]}
LOOKUP = {"kind": "tool", "tool": "lookup_order", "args": {"order_id": "o-1003"}}
COUNTS = """
SELECT (SELECT count(*) FROM usage_ledger WHERE tenant_id = %(tenant)s AND run_id = %(run)s),
       (SELECT count(*) FROM policy_decisions WHERE tenant_id = %(tenant)s AND role = 'active')
"""


class Explicit:
    """The governance functions as the state machine calls them, and the gateway between."""

    def __init__(self, pool: ConnectionPool, client: redis.Redis, prefix: str) -> None:
        store = PolicyBundleStore({"test": KEY.public_key()})
        store.load(BUNDLE)
        self.policy = PolicyService(store, PostgresDecisionRecorder(pool), get_tenant)
        self.metering = Metering(RedisQuotaStore(client, key_prefix=prefix), UsageLedger(pool))
        self.gateway = ToolGateway(
            ToolRegistry.load(None, get_http_client),
            self.policy,
            self.metering,
            IdempotentCalls(client, key_prefix=prefix),
            decisions=PostgresDecisionRecorder(pool),
        )

    def check(
        self, tenant_id: str, run_id: uuid.UUID, step_id: uuid.UUID, action: dict[str, Any]
    ) -> uuid.UUID:
        asked = {"tenant_id": tenant_id, "principal": PRINCIPAL, "action": action}
        decision = self.policy.check(
            PolicyInput.model_validate(asked | {"run_id": run_id, "step_id": step_id})
        )
        assert decision.allow, decision.reasons
        return decision.decision_id

    def call(self, tenant_id: str, run_id: uuid.UUID, step_id: uuid.UUID, decision_id: uuid.UUID) -> Any:
        reservation = self.metering.reserve(
            ReserveRequest(tenant_id=tenant_id, capability="tool_gateway", estimate_tokens=0)
        )
        answer = self.gateway.call(
            ToolCall.model_validate(
                {
                    "tenant_id": tenant_id,
                    "principal": PRINCIPAL,
                    "run_id": run_id,
                    "step_id": step_id,
                    "tool": LOOKUP["tool"],
                    "args": LOOKUP["args"],
                    "governance": {"decision_id": decision_id, "reservation_id": reservation.reservation_id},
                }
            )
        )
        self.metering.settle(
            SettleRequest(
                tenant_id=tenant_id,
                reservation_id=reservation.reservation_id,
                input_tokens=0,
                output_tokens=0,
                run_id=run_id,
                step_id=step_id,
            )
        )
        return answer


@pytest.fixture
def explicit(db_pool: ConnectionPool, redis_client: redis.Redis, redis_key_prefix: str) -> Explicit:
    return Explicit(db_pool, redis_client, redis_key_prefix)


def test_an_explicit_tool_step_writes_one_decision_and_one_ledger_row(
    explicit: Explicit, db_pool: ConnectionPool
) -> None:
    tenant_id, run_id = start_run(db_pool)
    step_id = uuid.uuid4()
    decision_id = explicit.check(tenant_id, run_id, step_id, LOOKUP)

    answer = explicit.call(tenant_id, run_id, step_id, decision_id)

    assert answer.decision_id == decision_id
    assert answer.result["order"]["order_id"] == "o-1003"
    with db_pool.connection() as conn:
        assert conn.execute(COUNTS, {"tenant": tenant_id, "run": run_id}).fetchone() == (1, 1)


def test_another_tenants_or_another_steps_decision_is_refused(
    explicit: Explicit, db_pool: ConnectionPool
) -> None:
    tenant_id, run_id = start_run(db_pool)
    other_tenant, other_run = start_run(db_pool)
    step_id = uuid.uuid4()
    theirs = explicit.check(other_tenant, other_run, step_id, LOOKUP)
    another_step = explicit.check(tenant_id, run_id, uuid.uuid4(), LOOKUP)

    with pytest.raises(GovernanceMismatch, match=f"is no policy decision of tenant {tenant_id}"):
        explicit.call(tenant_id, run_id, step_id, theirs)
    with pytest.raises(GovernanceMismatch, match="step_id"):
        explicit.call(tenant_id, run_id, step_id, another_step)

    with db_pool.connection() as conn:  # refused before the tool ran or the state machine settled
        assert conn.execute(COUNTS, {"tenant": tenant_id, "run": run_id}).fetchone() == (0, 1)

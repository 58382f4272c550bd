"""The governed-ping flow's scenarios, run by the functional tier (moto) and on LocalStack alike.

Each scenario takes `run(flow_input) -> describe_execution answer (+ "history")`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from aob.db import get_pool
from aob.tenants import create_tenant

Run = Callable[[dict[str, Any]], dict[str, Any]]
FLOW = "GovernedPingStateMachine"


def _flow_input(tenant_id: str, tool: str, roles: list[str], estimate: int = 40) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "session_id": f"s-{uuid.uuid4().hex[:10]}",
        "principal": {"subject": "user:test", "roles": roles},
        "action": {"kind": "tool", "tool": tool, "args": {"order_id": "o-1"}, "data_classes": ["internal"]},
        "estimate_tokens": estimate,
        "usage": {"input_tokens": 12, "output_tokens": 30},
    }


def _new_tenant(**quotas: Any) -> str:
    tenant_id = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant_id, quotas=quotas or None)
    return tenant_id


def _ledger(tenant_id: str) -> list[tuple[int, int, int]]:
    with get_pool().connection() as conn:
        return conn.execute(
            "SELECT estimate_tokens, input_tokens, output_tokens FROM usage_ledger WHERE tenant_id = %s",
            (tenant_id,),
        ).fetchall()


def allowed_call_is_metered_and_releases_its_lease(run: Run) -> None:
    tenant = _new_tenant()
    described = run(_flow_input(tenant, "lookup_order", ["viewer"]))

    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    governance = output["governance"]
    assert governance["Ping"]["policy"]["value"]["allow"] is True
    assert governance["Ping"]["settlement"]["value"]["input_tokens"] == 12
    assert governance["released"]["value"]["released"] is True
    assert governance["lease"]["value"]["fencing_token"] > 0
    assert "denied" not in output
    assert _ledger(tenant) == [(40, 12, 30)]


def denied_policy_takes_the_denied_branch_with_reasons(run: Run) -> None:
    tenant = _new_tenant()
    described = run(_flow_input(tenant, "delete_customer", ["viewer"]))

    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    assert output["denied"]["step"] == "Ping"
    assert output["denied"]["reasons"], "a deny says why"
    assert output["denied"]["bundle_digest"]
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in described["history"] if "stateEnteredEventDetails" in e
    ]
    assert "PingDenied" in entered and "PingReserveTokens" not in entered and "Ping" not in entered
    assert output["governance"]["released"]["value"]["released"] is True
    assert _ledger(tenant) == []


def exhausted_quota_fails_with_quota_exceeded(run: Run) -> None:
    tenant = _new_tenant(tokens_per_day=30)
    described = run(_flow_input(tenant, "lookup_order", ["viewer"], estimate=100))

    assert described["status"] == "FAILED", described
    assert described["error"] == "QuotaExceeded"
    cause = json.loads(described["cause"])
    assert cause["errorType"] == "QuotaExceeded" and "retry after" in cause["errorMessage"]
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in described["history"] if "stateEnteredEventDetails" in e
    ]
    assert "ReleaseLeaseAfterQuotaExceeded" in entered and "Ping" not in entered
    assert _ledger(tenant) == []


SCENARIOS = [
    allowed_call_is_metered_and_releases_its_lease,
    denied_policy_takes_the_denied_branch_with_reasons,
    exhausted_quota_fails_with_quota_exceeded,
]

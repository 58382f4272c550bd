"""functions/tool_gateway: the handler fed with tests/events/tool_call.json, real Postgres and Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aob.errors import ConfigurationError, InvalidInput, InvalidToolArguments, PolicyDenied, UnknownTool
from aob.metering import redis_store as metering_store
from aob.policy import get_policy_service, policy_files, public_key_b64, sign_bundle
from aob.tenants import create_tenant
from aob.tools import _idempotency, get_tool_gateway
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg_pool import ConnectionPool

from tests.support import Handler, lambda_context, load_handler

ROOT = Path(__file__).resolve().parents[2]
EVENT = json.loads((ROOT / "tests" / "events" / "tool_call.json").read_text())
KEY = Ed25519PrivateKey.generate()
REGISTER_RUN = """
WITH workflow AS (
    INSERT INTO workflows (tenant_id, name, version, spec, spec_sha256)
    VALUES (%(tenant)s, 'orders', 1, '{}', 'sha') RETURNING workflow_id
), run AS (
    INSERT INTO runs (tenant_id, run_id, workflow_id) SELECT %(tenant)s, %(run)s, workflow_id FROM workflow
    RETURNING run_id
)
INSERT INTO steps (tenant_id, step_id, run_id, state_name, kind)
SELECT %(tenant)s, %(step)s, run_id, 'LookupOrder', 'tool' FROM run
"""


@pytest.fixture
def handler(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_key_prefix: str, db_pool: ConnectionPool
) -> Iterator[Handler]:
    """The handler with a signed bundle in AOB_POLICY_*, its Redis keys under the test's prefix."""
    bundle = tmp_path / "policy.tar.gz"
    bundle.write_bytes(sign_bundle(policy_files(ROOT / "policies"), KEY, "test-key"))
    monkeypatch.setenv("AOB_POLICY_BUNDLE", str(bundle))
    monkeypatch.setenv("AOB_POLICY_TRUSTED_KEYS", json.dumps({"test-key": public_key_b64(KEY.public_key())}))
    monkeypatch.delenv("AOB_POLICY_CANDIDATE_BUNDLE", raising=False)
    monkeypatch.delenv("AOB_TOOLS_FILE", raising=False)
    monkeypatch.setattr(metering_store, "KEY_PREFIX", redis_key_prefix)
    monkeypatch.setattr(_idempotency, "KEY_PREFIX", redis_key_prefix)
    get_policy_service.cache_clear()
    get_tool_gateway.cache_clear()
    yield load_handler("tool_gateway")
    get_policy_service.cache_clear()
    get_tool_gateway.cache_clear()


@pytest.fixture
def event(db_pool: ConnectionPool) -> dict[str, Any]:
    """The sample event for a new tenant, with its run and step registered."""
    tenant_id = f"shop-{uuid.uuid4().hex[:8]}"
    create_tenant(tenant_id, plan="pro")
    with db_pool.connection() as conn:
        conn.execute(REGISTER_RUN, {"tenant": tenant_id, "run": EVENT["run_id"], "step": EVENT["step_id"]})
    return EVENT | {"tenant_id": tenant_id}


def test_the_sample_event_looks_up_the_order_and_a_retry_replays_it(
    handler: Handler, event: dict[str, Any], db_pool: ConnectionPool
) -> None:
    first = handler(event, lambda_context("aob-tool-gateway-test"))
    retry = handler(event, lambda_context("aob-tool-gateway-test"))

    assert first["tool"] == "lookup_order" and first["result"]["found"] is True
    assert (
        first["result"]["order"]["customer_email"] == "ada@example.com" and first["result"]["total"] == 129.0
    )
    assert (first["truncated"], first["redacted"], first["replayed"], retry["replayed"]) == (
        False,
        [],
        False,
        True,
    )
    assert retry["result"] == first["result"] and retry["idempotency_key"] == first["idempotency_key"]
    assert first["idempotency_key"].startswith("tool:") and uuid.UUID(first["decision_id"])
    with db_pool.connection() as conn:
        settled = conn.execute(
            "SELECT capability, step_id FROM usage_ledger WHERE tenant_id = %s", (event["tenant_id"],)
        ).fetchall()
    assert settled == [("tool_gateway", uuid.UUID(event["step_id"]))]  # both attempts: one settlement


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"attempt": 2}, InvalidInput, "invalid ToolCall input: attempt: Extra inputs are not permitted"),
        (
            {"tool": "lookup_orders"},
            UnknownTool,
            "no tool 'lookup_orders'; known tools: calculator, extract_keywords, generate_report",
        ),
        (
            {"args": {"order": "o-1001"}},
            InvalidToolArguments,
            "order_id: Field required; order: Extra inputs",
        ),
        ({"data_classes": ["financial"]}, PolicyDenied, "lookup_order may not receive financial data"),
    ],
)
def test_a_refused_event_raises_its_named_error(
    handler: Handler, event: dict[str, Any], change: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        handler(event | change, lambda_context("aob-tool-gateway-test"))


def test_a_bad_tools_file_fails_the_first_call_naming_the_file(
    handler: Handler, event: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"tools": [{"name": "web_search", "kind": "http"}]}))
    monkeypatch.setenv("AOB_TOOLS_FILE", str(tools))

    with pytest.raises(ConfigurationError, match="invalid tools file .*tools.json: tools.0.http.description"):
        handler(event, lambda_context("aob-tool-gateway-test"))

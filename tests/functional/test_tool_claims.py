"""The claim check through functions/tool_gateway, with S3 in moto and the real Postgres and Redis.

A result too large for a Step Functions state goes to the claims bucket (SSE on), the handler
answers with its claim, and the next call passes the claim and gets the full content.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aob.config import get_settings
from aob.errors import InvalidToolArguments
from aob.metering import redis_store as metering_store
from aob.policy import get_policy_service, policy_files, public_key_b64, sign_bundle
from aob.tenants import create_tenant
from aob.tools import _idempotency, get_tool_gateway
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto import mock_aws
from psycopg_pool import ConnectionPool

from tests.support import Handler, lambda_context, load_handler

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()
BUCKET = "aob-artifacts-claims-test"
REGISTER_RUN = """
WITH workflow AS (
    INSERT INTO workflows (tenant_id, name, version, spec, spec_sha256)
    VALUES (%(tenant)s, 'reports', 1, '{}', 'sha') RETURNING workflow_id
), run AS (
    INSERT INTO runs (tenant_id, run_id, workflow_id) SELECT %(tenant)s, %(run)s, workflow_id FROM workflow
    RETURNING run_id
)
INSERT INTO steps (tenant_id, step_id, run_id, state_name, kind)
SELECT %(tenant)s, step_id, run_id, 'Step', 'tool' FROM run, unnest(%(steps)s::uuid[]) AS step_id
"""
REPORT = {"topic": "sales", "sections": 1000, "words_per_section": 40}  # about 300 KB of JSON


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_key_prefix: str) -> Iterator[Any]:
    """moto S3 with the claims bucket, and the gateway's settings pointing at it."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # moto intercepts AWS hostnames only
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    bundle = tmp_path / "policy.tar.gz"
    bundle.write_bytes(sign_bundle(policy_files(ROOT / "policies"), KEY, "test-key"))
    monkeypatch.setenv("AOB_POLICY_BUNDLE", str(bundle))
    monkeypatch.setenv("AOB_POLICY_TRUSTED_KEYS", json.dumps({"test-key": public_key_b64(KEY.public_key())}))
    monkeypatch.delenv("AOB_POLICY_CANDIDATE_BUNDLE", raising=False)
    monkeypatch.delenv("AOB_TOOLS_FILE", raising=False)
    monkeypatch.setenv("AOB_CLAIMS_BUCKET", BUCKET)
    monkeypatch.setattr(metering_store, "KEY_PREFIX", redis_key_prefix)
    monkeypatch.setattr(_idempotency, "KEY_PREFIX", redis_key_prefix)
    get_settings.cache_clear()
    get_policy_service.cache_clear()
    get_tool_gateway.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    get_settings.cache_clear()
    get_policy_service.cache_clear()
    get_tool_gateway.cache_clear()


@pytest.fixture
def handler(s3: Any) -> Handler:
    return load_handler("tool_gateway")


def events(db_pool: ConnectionPool, tenant: str, count: int) -> list[dict[str, Any]]:
    """`count` tool-call events of one new run of `tenant` (a new tenant on the pro plan)."""
    run, steps = uuid.uuid4(), [uuid.uuid4() for _ in range(count)]
    create_tenant(tenant, plan="pro")
    with db_pool.connection() as conn:
        conn.execute(REGISTER_RUN, {"tenant": tenant, "run": run, "steps": steps})
    principal = {"subject": "user:ops-1", "roles": ["operator"]}
    return [
        {"tenant_id": tenant, "principal": principal, "run_id": str(run), "step_id": str(step)}
        for step in steps
    ]


def test_a_report_past_the_state_limit_travels_by_claim_to_the_next_tool(
    handler: Handler, s3: Any, db_pool: ConnectionPool
) -> None:
    tenant = f"claims-{uuid.uuid4().hex[:8]}"
    produce, consume = events(db_pool, tenant, 2)
    context = lambda_context("aob-tool-gateway-test")

    produced = handler(produce | {"tool": "generate_report", "args": REPORT}, context)
    claim = produced["result"]["$claim"]
    stored = s3.get_object(Bucket=BUCKET, Key=claim["key"])
    body = stored["Body"].read()

    assert produced["claimed"] and not produced["truncated"]
    assert len(json.dumps(produced)) < 2048 and len(body) > 256 * 1024
    assert claim["key"] == f"claims/{tenant}/{produce['run_id']}/{produce['step_id']}/{claim['sha256']}.json"
    assert (claim["bytes"], claim["sha256"]) == (len(body), hashlib.sha256(body).hexdigest())
    assert stored["ServerSideEncryption"] == "AES256" and stored["ContentType"] == "application/json"

    stats = handler(consume | {"tool": "report_stats", "args": {"report": produced["result"]}}, context)

    assert stats["result"] == {"sections": 1000, "words": 40_000, "sha256": claim["sha256"]}


def test_a_claim_of_another_tenant_is_refused(handler: Handler, db_pool: ConnectionPool) -> None:
    context = lambda_context("aob-tool-gateway-test")
    (theirs,) = events(db_pool, f"claims-{uuid.uuid4().hex[:8]}", 1)
    (ours,) = events(db_pool, f"claims-{uuid.uuid4().hex[:8]}", 1)
    produced = handler(theirs | {"tool": "generate_report", "args": REPORT}, context)

    with pytest.raises(InvalidToolArguments, match="report: the claim is not under s3://"):
        handler(ours | {"tool": "report_stats", "args": {"report": produced["result"]}}, context)

"""functions/policy_check: the handler with a signed bundle from the environment and real Postgres."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aob.errors import BundleRejected, ConfigurationError, InvalidInput
from aob.policy import get_policy_service, policy_files, public_key_b64, sign_bundle
from aob.tenants import create_tenant
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg_pool import ConnectionPool

from tests.support import lambda_context, load_handler

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A signed bundle at AOB_POLICY_BUNDLE and its key in AOB_POLICY_TRUSTED_KEYS; yields the path."""
    bundle = tmp_path / "policy.tar.gz"
    bundle.write_bytes(sign_bundle(policy_files(ROOT / "policies"), KEY, "test-key"))
    monkeypatch.setenv("AOB_POLICY_BUNDLE", str(bundle))
    monkeypatch.setenv("AOB_POLICY_TRUSTED_KEYS", json.dumps({"test-key": public_key_b64(KEY.public_key())}))
    monkeypatch.delenv("AOB_POLICY_CANDIDATE_BUNDLE", raising=False)
    get_policy_service.cache_clear()
    yield bundle
    get_policy_service.cache_clear()


def event(name: str, tenant_id: str) -> dict[str, Any]:
    return json.loads((ROOT / "tests" / "events" / name).read_text()) | {"tenant_id": tenant_id}


@pytest.fixture
def tenant_id(db_pool: ConnectionPool) -> str:
    tenant_id = f"acme-{uuid.uuid4().hex[:8]}"
    create_tenant(tenant_id, plan="pro")
    return tenant_id


def test_allow_event_returns_the_decision_with_obligations(environment: Path, tenant_id: str) -> None:
    result = load_handler("policy_check")(
        event("policy_allow.json", tenant_id), lambda_context("aob-policy-check-test")
    )

    assert result["allow"] is True
    assert result["obligations"]["require_approval"]["approver_roles"] == ["approver", "admin"]
    assert result["obligations"]["redact"] == ["$.args.card_number"]
    assert result["tenant_id"] == tenant_id
    assert result["bundle_digest"].startswith("sha256:")
    assert uuid.UUID(result["decision_id"])
    assert result["shadow"] is None and result["shadow_disagrees"] is False


def test_deny_event_is_a_result_not_an_error(environment: Path, tenant_id: str) -> None:
    result = load_handler("policy_check")(
        event("policy_deny.json", tenant_id), lambda_context("aob-policy-check-test")
    )

    assert result["allow"] is False
    assert result["reasons"] == ["user:viewer-7 has no role allowed to call tool issue_refund"]


def test_a_candidate_bundle_is_evaluated_in_shadow(
    environment: Path, tenant_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = policy_files(ROOT / "policies")
    data = json.loads(files["data.json"])
    data["aob"]["catalog"]["tools"]["issue_refund"]["roles"].append("viewer")
    candidate = tmp_path / "candidate.tar.gz"
    candidate.write_bytes(sign_bundle({**files, "data.json": json.dumps(data).encode()}, KEY, "test-key"))
    monkeypatch.setenv("AOB_POLICY_CANDIDATE_BUNDLE", str(candidate))

    result = load_handler("policy_check")(
        event("policy_deny.json", tenant_id), lambda_context("aob-policy-check-test")
    )

    assert result["allow"] is False
    assert result["shadow"]["allow"] is True
    assert result["shadow_disagrees"] is True


def test_a_malformed_event_names_the_field(environment: Path, tenant_id: str) -> None:
    bad = event("policy_allow.json", tenant_id) | {"principal": {"subject": "user:ops-1", "roles": "admin"}}

    with pytest.raises(InvalidInput, match="principal.roles"):
        load_handler("policy_check")(bad, lambda_context("aob-policy-check-test"))


def test_a_bundle_that_does_not_verify_is_refused_at_start(environment: Path, tenant_id: str) -> None:
    forged = sign_bundle(policy_files(ROOT / "policies"), Ed25519PrivateKey.generate(), "test-key")
    environment.write_bytes(forged)

    with pytest.raises(BundleRejected, match="signature does not verify"):
        load_handler("policy_check")(
            event("policy_allow.json", tenant_id), lambda_context("aob-policy-check-test")
        )


def test_no_bundle_configured_says_what_to_set(
    environment: Path, tenant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AOB_POLICY_BUNDLE")

    with pytest.raises(ConfigurationError, match="AOB_POLICY_BUNDLE is not set"):
        load_handler("policy_check")(
            event("policy_allow.json", tenant_id), lambda_context("aob-policy-check-test")
        )

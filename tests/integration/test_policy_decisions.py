"""Policy decisions recorded in Postgres, with tenants and plans read from the tenants table."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aob.errors import UnknownTenant
from aob.policy import (
    PolicyBundleStore,
    PolicyInput,
    PolicyService,
    PostgresDecisionRecorder,
    policy_files,
    sign_bundle,
)
from aob.tenants import create_tenant, get_tenant
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import errors
from psycopg_pool import ConnectionPool

pytestmark = pytest.mark.integration

POLICIES = Path(__file__).resolve().parents[2] / "policies"
KEY = Ed25519PrivateKey.generate()

SELECT_ROWS = """
SELECT decision_id, role, shadow_of, bundle_digest, allow, reasons, obligations, input_sha256,
       input_summary, run_id, step_id
FROM policy_decisions WHERE tenant_id = %s ORDER BY role
"""
COLUMN = """
SELECT is_nullable FROM information_schema.columns
WHERE table_name = 'policy_decisions' AND column_name = 'tenant_id'
"""
REFERENCES_TENANTS = """
SELECT count(*) FROM pg_constraint
WHERE conrelid = 'policy_decisions'::regclass AND contype = 'f' AND confrelid = 'tenants'::regclass
"""
INDEX_LEADS = """
SELECT i.indexrelid::regclass::text, a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = 'policy_decisions'::regclass
"""


def tenant(plan: str) -> str:
    tenant_id = f"pol-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant_id, plan=plan)
    return tenant_id


def refund(tenant_id: str, amount: int, card_number: str | None = None) -> PolicyInput:
    args: dict[str, object] = {"amount": amount} | ({"card_number": card_number} if card_number else {})
    return PolicyInput.model_validate(
        {
            "tenant_id": tenant_id,
            "principal": {"subject": "user:ops-1", "roles": ["operator"]},
            "action": {"kind": "tool", "tool": "issue_refund", "args": args, "data_classes": ["pii"]},
            "run_id": str(uuid.uuid4()),
            "step_id": str(uuid.uuid4()),
        }
    )


@pytest.fixture
def checker(db_pool: ConnectionPool) -> PolicyService:
    """The shipped policies active, and a copy of them as the candidate (so shadows agree)."""
    bundle = sign_bundle(policy_files(POLICIES), KEY, "it")
    store = PolicyBundleStore({"it": KEY.public_key()})
    store.load(bundle)
    store.load(bundle, "candidate")
    return PolicyService(store, PostgresDecisionRecorder(db_pool), get_tenant)


def test_policy_decisions_are_tenant_scoped(db_pool: ConnectionPool) -> None:
    with db_pool.connection() as conn:
        assert conn.execute(COLUMN).fetchone() == ("NO",)
        assert conn.execute(REFERENCES_TENANTS).fetchone() == (1,)
        leads: dict[str, str] = dict(conn.execute(INDEX_LEADS).fetchall())

    assert set(leads.values()) == {"tenant_id"}
    assert len(leads) == 3


def test_a_check_records_the_active_and_the_shadow_decision(
    checker: PolicyService, db_pool: ConnectionPool
) -> None:
    tenant_id = tenant("pro")
    request = refund(tenant_id, 250, card_number="4111111111111111")

    decision = checker.check(request)

    with db_pool.connection() as conn:
        active, shadow = conn.execute(SELECT_ROWS, (tenant_id,)).fetchall()
    assert decision.shadow is not None
    assert active[:5] == (decision.decision_id, "active", None, decision.bundle_digest, True)
    assert shadow[:3] == (decision.shadow.decision_id, "shadow", decision.decision_id)
    assert active[5] == [] and active[6] == decision.obligations
    assert active[6]["redact"] == ["$.args.card_number"]
    assert active[7] == shadow[7] and len(active[7]) == 64
    assert active[9:] == (request.run_id, request.step_id)
    # Argument values (a card number here) are never stored, only their names.
    assert active[8]["action"]["arg_names"] == ["amount", "card_number"]
    assert "4111111111111111" not in str(active[8])


def test_the_plan_in_the_tenants_table_decides(checker: PolicyService) -> None:
    assert checker.check(refund(tenant("enterprise"), 500)).obligations == {}
    assert checker.check(refund(tenant("pro"), 500)).obligations["require_approval"]
    assert checker.check(refund(tenant("free"), 500)).reasons == [
        "tool issue_refund is not available on the free plan"
    ]


def test_an_unknown_tenant_is_refused(checker: PolicyService) -> None:
    with pytest.raises(UnknownTenant):
        checker.check(refund("no-such-tenant", 5))


def test_recorded_decisions_are_append_only(checker: PolicyService, db_pool: ConnectionPool) -> None:
    tenant_id = tenant("pro")
    checker.check(refund(tenant_id, 5))

    with db_pool.connection() as conn, pytest.raises(errors.RestrictViolation):
        conn.execute("UPDATE policy_decisions SET allow = NOT allow WHERE tenant_id = %s", (tenant_id,))


def test_a_shadow_row_must_name_the_decision_it_shadows(db_pool: ConnectionPool) -> None:
    tenant_id = tenant("pro")
    insert = """
    INSERT INTO policy_decisions (tenant_id, decision_id, role, shadow_of, bundle_digest, allow,
                                  input_sha256, input_summary)
    VALUES (%s, gen_random_uuid(), 'shadow', %s, 'sha256:x', true, 'x', '{}')
    """
    with db_pool.connection() as conn, pytest.raises(errors.CheckViolation):
        conn.execute(insert, (tenant_id, None))
    with db_pool.connection() as conn, pytest.raises(errors.ForeignKeyViolation):
        conn.execute(insert, (tenant_id, uuid.uuid4()))

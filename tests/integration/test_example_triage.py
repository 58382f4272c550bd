"""The support-triage example (examples/support_triage) on LocalStack, in both governance modes.

A refund request pauses at its approval step until a person decides, through the deployed
approval function (or `aob approve`): approving resumes it to the refund, rejecting or letting it
time out ends it failed with ApprovalRejected. The policy refuses a viewer and the run's own
requester. Every model/tool step leaves a DecisionRecord on the run's hash chain, and the order
lookup before the pause runs once however the run resumes.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aob import cli
from aob.db import get_pool
from aob.recorder import Recorder
from aob.runs import PublishedWorkflow
from aob.tenants import create_tenant
from aob.workflows import parse_spec

from tests.integration.workflow_runs import STAGE, invoke, publish_spec, wait_for_run

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[2] / "examples" / "support_triage" / "workflow.yaml"
MODES = ("explicit", "fused")
# The requester holds the approver role too: only separation of duties keeps them from approving.
REQUESTER = {"subject": "user:agent-ana", "roles": ["operator", "approver"]}
APPROVER = {"subject": "user:lead-lou", "roles": ["approver"]}
VIEWER = {"subject": "user:intern-ivo", "roles": ["viewer"]}
REFUND = {
    "message": "My parcel arrived broken, I want my money back.",
    "order_id": "o-1001",
    "category": "refund",
}
TOTAL = 129.0  # lookup_order's total of o-1001: above the "pro" plan's 100 refund threshold
# Long enough for a cold approval function to store the request before the task times out (if the
# run's lease is released first, the request is refused and there is nothing left to expire).
TIMEOUT_S = 10


def quick_spec() -> Any:
    """The example with an approval that times out after TIMEOUT_S seconds."""
    data = yaml.safe_load(SPEC.read_text())
    data["name"] = "support_triage_quick"
    data["nodes"]["approve_refund"]["timeout_s"] = TIMEOUT_S
    return parse_spec(data)


@pytest.fixture(scope="module")
def tenant(deployed_stack: dict[str, str]) -> str:
    name = f"triage-{uuid.uuid4().hex[:8]}"
    create_tenant(name, plan="pro")
    return name


@pytest.fixture(scope="module")
def published(aws, deployed_stack, tenant, model_ready) -> dict[str, PublishedWorkflow]:
    found = {mode: publish_spec(aws, deployed_stack, tenant, SPEC, mode) for mode in MODES}
    for mode in MODES:
        found[f"quick-{mode}"] = publish_spec(aws, deployed_stack, tenant, quick_spec(), mode)
    return found


def start(aws, stack, tenant: str, workflow: PublishedWorkflow, run_input: dict[str, Any]) -> str:
    payload = {
        "action": "start",
        "tenant_id": tenant,
        "workflow": workflow.name,
        "version": workflow.version,
        "input": run_input,
        "principal": REQUESTER,
    }
    return invoke(aws, stack, payload)["run_id"]


def decide(
    aws, stack, tenant: str, run_id: str, principal: dict, *, approve: bool, reason: str | None = None
):
    """The deployed approval function's answer to a decision: (ok, body)."""
    event = {
        "action": "decide",
        "tenant_id": tenant,
        "run_id": run_id,
        "principal": principal,
        "approve": approve,
        "reason": reason,
    }
    response = aws("lambda").invoke(FunctionName=stack["ApprovalFunctionArn"], Payload=json.dumps(event))
    return not response.get("FunctionError"), json.loads(response["Payload"].read())


def approvals(tenant: str, run_id: str) -> list[tuple[str, str]]:
    with get_pool().connection() as conn:
        return conn.execute(
            "SELECT node, status FROM approvals WHERE tenant_id = %s AND run_id = %s ORDER BY requested_at",
            (tenant, run_id),
        ).fetchall()


def tool_records(detail: dict[str, Any], tool: str) -> list[dict[str, Any]]:
    return [r for r in detail["records"] if (r["record"]["tool"] or {}).get("name") == tool]


def approval_records(detail: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(node, outcome, error) of the run's approval records, in chain order."""
    found = [r["record"] for r in detail["records"] if r["record"]["node"]["kind"] == "approval"]
    return [(r["node"]["name"], r["outcome"], r["error"]) for r in found]


def wait_until_waiting(aws, stack, tenant: str, run_id: str) -> dict[str, Any]:
    detail = wait_for_run(aws, stack, tenant, run_id, until=("waiting", "succeeded", "failed"))
    assert detail["run"]["status"] == "waiting", detail["run"]
    return detail


@pytest.fixture(scope="module")
def approved(aws, deployed_stack, tenant, published) -> dict[str, dict[str, Any]]:
    """A refund run per mode, paused, refused to the wrong people, then approved with `aob approve`."""
    runs = {mode: start(aws, deployed_stack, tenant, published[mode], REFUND) for mode in MODES}
    found: dict[str, dict[str, Any]] = {}
    for mode, run_id in runs.items():
        waiting = wait_until_waiting(aws, deployed_stack, tenant, run_id)
        pending = approvals(tenant, run_id)
        refusals = [
            decide(aws, deployed_stack, tenant, run_id, who, approve=True) for who in (VIEWER, REQUESTER)
        ]
        time.sleep(1)
        after_refusals = wait_for_run(aws, deployed_stack, tenant, run_id, until=("waiting",), timeout_s=5)
        argv = ["approve", run_id, "--tenant", tenant, "--subject", APPROVER["subject"]]
        exit_status = cli.main(
            [*argv, "--role", "approver", "--reason", "parcel photo checked", "--stage", STAGE]
        )
        detail = wait_for_run(aws, deployed_stack, tenant, run_id)
        found[mode] = {
            "run_id": run_id,
            "waiting": waiting,
            "pending": pending,
            "refusals": refusals,
            "after_refusals": after_refusals,
            "exit_status": exit_status,
            "detail": detail,
            "summary": invoke(
                aws, deployed_stack, {"action": "summary", "tenant_id": tenant, "run_id": run_id}
            ),
        }
    return found


@pytest.mark.parametrize("mode", MODES)
def test_a_refund_pauses_for_its_approval(approved, mode: str) -> None:
    run = approved[mode]
    assert run["waiting"]["run"]["status"] == "waiting"
    assert run["pending"] == [("approve_refund", "pending")]
    # Before the pause: the order was looked up, nothing was refunded yet.
    assert len(tool_records(run["waiting"], "lookup_order")) == 1
    assert tool_records(run["waiting"], "issue_refund") == []


@pytest.mark.parametrize("mode", MODES)
def test_a_viewer_and_the_requester_are_refused_and_the_run_keeps_waiting(approved, mode: str) -> None:
    run = approved[mode]
    (viewer_ok, viewer), (requester_ok, requester) = run["refusals"]
    assert not viewer_ok and viewer["errorType"] == "PolicyDenied", viewer
    assert "user:intern-ivo may not decide" in viewer["errorMessage"]
    assert not requester_ok and requester["errorType"] == "PolicyDenied", requester
    assert "separation of duties" in requester["errorMessage"]
    assert run["after_refusals"]["run"]["status"] == "waiting"


@pytest.mark.parametrize("mode", MODES)
def test_approving_resumes_the_run_to_the_refund(approved, tenant, mode: str) -> None:
    run = approved[mode]
    detail = run["detail"]
    assert run["exit_status"] == 0
    assert detail["run"]["status"] == "succeeded", detail["run"]["error"]
    refund = detail["run"]["output"]["refund"]["result"]
    assert (refund["order_id"], refund["amount"], refund["currency"]) == ("o-1001", TOTAL, "EUR")
    assert refund["refund_id"].startswith("rf-")
    assert approvals(tenant, run["run_id"]) == [("approve_refund", "approved")]
    assert len(tool_records(detail, "issue_refund")) == 1


@pytest.mark.parametrize("mode", MODES)
def test_resuming_never_repeats_the_lookup_before_the_pause(approved, tenant, mode: str) -> None:
    detail = approved[mode]["detail"]
    lookups = tool_records(detail, "lookup_order")
    assert [r["record"]["outcome"] for r in lookups] == ["succeeded"]
    with get_pool().connection() as conn:
        (calls,) = conn.execute(
            "SELECT count(*) FROM decision_records WHERE tenant_id = %s AND run_id = %s"
            " AND record->'tool'->>'name' = 'lookup_order'",
            (tenant, approved[mode]["run_id"]),
        ).fetchone()
    assert calls == 1


@pytest.mark.parametrize("mode", MODES)
def test_the_records_chain_and_a_changed_record_is_named(approved, tenant, mode: str) -> None:
    run_id = approved[mode]["run_id"]
    detail = approved[mode]["detail"]
    assert detail["chain"]["ok"] and detail["chain"]["records"] == len(detail["records"]) >= 4
    assert approval_records(detail) == [
        ("approve_refund", "waiting", None),
        ("approve_refund", "succeeded", None),
    ]
    # The model classifies every message; the form's category routes.
    records = [r["record"]["node"] for r in detail["records"]]
    assert [node["name"] for node in records if node["kind"] == "model"] == ["classify"]
    assert approved[mode]["summary"]["output_tokens"] > 0
    lookup = tool_records(detail, "lookup_order")[0]
    with get_pool().connection() as conn, conn.transaction():
        # The table is append-only (a trigger refuses UPDATE); its owner can switch that off.
        conn.execute("ALTER TABLE decision_records DISABLE TRIGGER decision_records_append_only")
        conn.execute(
            "UPDATE decision_records SET record = jsonb_set(record, '{tool,output,total}', '1.0')"
            " WHERE tenant_id = %s AND record_id = %s",
            (tenant, lookup["record_id"]),
        )
        conn.execute("ALTER TABLE decision_records ENABLE TRIGGER decision_records_append_only")
    report = Recorder().verify_chain(tenant, uuid.UUID(run_id))
    assert not report.ok
    assert report.first_bad_seq == lookup["seq"]
    assert "changed after it was written" in (report.reason or "")


def test_fused_takes_fewer_transitions_than_explicit(approved) -> None:
    explicit, fused = approved["explicit"]["summary"], approved["fused"]["summary"]
    assert 0 < fused["state_transitions"] < explicit["state_transitions"]
    assert 0 < fused["lambda_invocations"] < explicit["lambda_invocations"]


@pytest.mark.parametrize("mode", MODES)
def test_a_rejection_ends_the_run_failed_with_its_reason(
    aws, deployed_stack, tenant, published, mode
) -> None:
    run_id = start(aws, deployed_stack, tenant, published[mode], REFUND)
    wait_until_waiting(aws, deployed_stack, tenant, run_id)
    reason = "the order was already refunded by phone"
    ok, body = decide(aws, deployed_stack, tenant, run_id, APPROVER, approve=False, reason=reason)
    assert ok and body["status"] == "rejected", body
    detail = wait_for_run(aws, deployed_stack, tenant, run_id)
    assert detail["run"]["status"] == "failed"
    assert detail["run"]["error"] == {"error": "ApprovalRejected", "cause": reason}
    assert tool_records(detail, "issue_refund") == []
    assert detail["chain"]["ok"]
    assert approval_records(detail) == [
        ("approve_refund", "waiting", None),
        ("approve_refund", "failed", {"type": "ApprovalRejected", "reason": reason}),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_no_decision_in_time_is_a_rejection(aws, deployed_stack, tenant, published, mode) -> None:
    run_id = start(aws, deployed_stack, tenant, published[f"quick-{mode}"], REFUND)
    detail = wait_for_run(aws, deployed_stack, tenant, run_id, timeout_s=120)
    assert detail["run"]["status"] == "failed"
    assert detail["run"]["error"] == {
        "error": "ApprovalRejected",
        "cause": f"no decision within {TIMEOUT_S} s",
    }
    assert tool_records(detail, "issue_refund") == []
    ok, body = decide(aws, deployed_stack, tenant, run_id, APPROVER, approve=True)
    assert not ok and body["errorType"] == "ApprovalExpired", body


def test_without_a_category_the_model_classifies(aws, deployed_stack, tenant, published, model_ready) -> None:
    """The tiny model's weights are random: its answer is noise, so it is no refund and the run ends."""
    run_id = start(aws, deployed_stack, tenant, published["fused"], {"message": "Where is my order?"})
    detail = wait_for_run(aws, deployed_stack, tenant, run_id)
    assert detail["run"]["status"] == "succeeded", detail["run"]["error"]
    models = [r for r in detail["records"] if r["record"]["node"]["kind"] == "model"]
    assert [(r["record"]["node"]["name"], r["record"]["outcome"]) for r in models] == [
        ("classify", "succeeded")
    ]
    assert "lookup_order" not in detail["run"]["output"]

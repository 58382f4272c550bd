"""Published workflows and their runs on LocalStack: publish per tenant in both modes, start runs
through the runs function, SQS, EventBridge and S3, and read them back (status, events, cost)."""

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
from aob.runs import Publish, PublishedWorkflow, RunService, publish
from aob.tenants import create_tenant
from aob.workflows import parse_spec

from tests.integration.workflow_runs import STAGE, invoke, invoke_error, wait_for_run

pytestmark = pytest.mark.integration

# The tenant's usage_ledger rows, and those of one run.
LEDGER_ROWS = "SELECT count(*), count(*) FILTER (WHERE run_id = %s) FROM usage_ledger WHERE tenant_id = %s"


def _ledger_rows(tenant: str) -> int:
    with get_pool().connection() as conn:
        row = conn.execute(LEDGER_ROWS, (None, tenant)).fetchone()
    return row[0] if row else 0


PRINCIPAL = {"subject": "user:runs-test", "roles": ["operator"]}


def _calculate(expression: str) -> dict[str, Any]:
    return {"type": "tool", "tool": "calculator", "constants": {"expression": expression}, "end": True}


# Only transform, choice, map, parallel and the builtin tools: no model, no approval.
ORDER_MATH = {
    "name": "order_math",
    "version": "1",
    "start": "prepare",
    "nodes": {
        "prepare": {
            "type": "transform",
            "parameters": {"order_id.$": "$.input.order_id", "quantities.$": "$.input.quantities"},
            "next": "lookup",
        },
        "lookup": {
            "type": "tool",
            "tool": "lookup_order",
            "args": {"order_id": "$.prepare.order_id"},
            "next": "route",
        },
        "route": {
            "type": "choice",
            "choices": [
                {
                    "variable": "$.lookup.result.order.status",
                    "operator": "equals",
                    "value": "delivered",
                    "next": "totals",
                }
            ],
            "default": "done",
        },
        "totals": {
            "type": "parallel",
            "branches": [
                {"start": "double", "nodes": {"double": _calculate("129 * 2")}},
                {"start": "tax", "nodes": {"tax": _calculate("129 * 0.5")}},
            ],
            "next": "each",
        },
        "each": {
            "type": "map",
            "items_path": "$.prepare.quantities",
            "iterator": {
                "start": "label",
                "nodes": {
                    "label": {"type": "transform", "parameters": {"quantity.$": "$.item"}, "end": True}
                },
            },
            "next": "done",
        },
        "done": {"type": "succeed"},
    },
}
# Started by S3 uploads: its input is {bucket, key, size, etag}.
INGEST = {
    "name": "ingest",
    "version": "1",
    "start": "note",
    "nodes": {
        "note": {"type": "transform", "parameters": {"key.$": "$.input.key"}, "next": "measure"},
        "measure": {"type": "tool", "tool": "calculator", "constants": {"expression": "2 + 2"}, "end": True},
    },
}
ORDER_INPUT = {"order_id": "o-1001", "quantities": [1, 2, 3]}


@pytest.fixture(scope="module")
def tenants(deployed_stack: dict[str, str]) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:8]
    ours, theirs = f"runs-{suffix}", f"other-{suffix}"
    create_tenant(ours)
    create_tenant(theirs)
    return ours, theirs


@pytest.fixture(scope="module")
def published(aws, deployed_stack: dict[str, str], tenants: tuple[str, str]) -> dict[str, PublishedWorkflow]:
    tenant = tenants[0]

    def pub(spec: dict, mode: str) -> PublishedWorkflow:
        request = Publish(tenant_id=tenant, spec=parse_spec(spec), mode=mode, stage=STAGE)
        return publish(request, deployed_stack, sfn=aws("stepfunctions"))

    return {
        "explicit": pub(ORDER_MATH, "explicit"),
        "fused": pub(ORDER_MATH, "fused"),
        "ingest": pub(INGEST, "fused"),
    }


def start(aws, stack, tenant: str, version: int, **extra: Any) -> dict[str, Any]:
    payload = {
        "action": "start",
        "tenant_id": tenant,
        "workflow": "order_math",
        "version": version,
        "input": ORDER_INPUT,
        "principal": PRINCIPAL,
        **extra,
    }
    return invoke(aws, stack, payload)


def test_publishing_the_same_spec_again_is_a_no_op(aws, deployed_stack, tenants, published) -> None:
    assert published["explicit"].created and published["fused"].created
    assert published["fused"].version == published["explicit"].version + 1
    again = publish(
        Publish(tenant_id=tenants[0], spec=parse_spec(ORDER_MATH), mode="fused", stage=STAGE),
        deployed_stack,
        sfn=aws("stepfunctions"),
    )
    assert not again.created
    assert (again.version, again.state_machine_arn) == (
        published["fused"].version,
        published["fused"].state_machine_arn,
    )
    machine = aws("stepfunctions").describe_state_machine(stateMachineArn=again.state_machine_arn)
    assert machine["roleArn"] == deployed_stack["WorkflowExecutionRoleArn"]
    assert deployed_stack["ToolGatewayFunctionArn"] in machine["definition"]
    assert "${" not in machine["definition"]


def test_runs_succeed_in_both_modes_and_fused_takes_fewer_transitions(
    aws, deployed_stack, tenants, published
):
    tenant = tenants[0]
    summaries = {}
    ledger_rows = _ledger_rows(tenant)
    for mode in ("explicit", "fused"):
        run = start(aws, deployed_stack, tenant, published[mode].version)
        assert run["status"] == "running" and run["execution_arn"].endswith(run["run_id"])
        detail = wait_for_run(aws, deployed_stack, tenant, run["run_id"])
        assert detail["run"]["status"] == "succeeded", detail["run"]["error"]
        output = detail["run"]["output"]
        double, tax = output["totals"]
        assert (double["double"]["result"]["value"], tax["tax"]["result"]["value"]) == (258.0, 64.5)
        assert [item["label"]["quantity"] for item in output["each"]] == [1, 2, 3]
        assert [e["event_type"] for e in detail["events"]][:1] == ["run.started"]
        assert "run.finished" in [e["event_type"] for e in detail["events"]]
        assert detail["chain"]["ok"]
        summaries[mode] = invoke(
            aws, deployed_stack, {"action": "summary", "tenant_id": tenant, "run_id": run["run_id"]}
        )
        with get_pool().connection() as conn:
            row = conn.execute(
                "SELECT status, execution_arn, finished_at IS NOT NULL FROM runs"
                " WHERE tenant_id = %s AND run_id = %s",
                (tenant, run["run_id"]),
            ).fetchone()
        assert row == ("succeeded", run["execution_arn"], True)
        with get_pool().connection() as conn:
            charged = conn.execute(LEDGER_ROWS, (run["run_id"], tenant)).fetchone()
        # One usage_ledger row per governed step (lookup, double, tax), all of this run: charged once.
        assert charged is not None and (charged[0] - ledger_rows, charged[1]) == (3, 3), (mode, charged)
        ledger_rows = charged[0]
    explicit, fused = summaries["explicit"], summaries["fused"]
    assert 0 < fused["state_transitions"] < explicit["state_transitions"]
    assert 0 < fused["lambda_invocations"] < explicit["lambda_invocations"]
    assert fused["cost_usd"]["total"] < explicit["cost_usd"]["total"]
    assert {use["function"] for use in fused["lambdas"]} >= {f"aob-tool-gateway-{STAGE}"}


def test_same_idempotency_key_starts_one_execution(aws, deployed_stack, tenants, published) -> None:
    key = f"order-{uuid.uuid4().hex}"
    first = start(aws, deployed_stack, tenants[0], published["fused"].version, idempotency_key=key)
    second = start(aws, deployed_stack, tenants[0], published["fused"].version, idempotency_key=key)
    assert second["run_id"] == first["run_id"] and second["existing"] and not first["existing"]
    executions = aws("stepfunctions").list_executions(stateMachineArn=published["fused"].state_machine_arn)
    assert [e["name"] for e in executions["executions"]].count(first["run_id"]) == 1


def test_another_tenant_sees_no_run_and_no_workflow(aws, deployed_stack, tenants, published) -> None:
    run = start(aws, deployed_stack, tenants[0], published["fused"].version)
    for action in ("get", "summary"):
        error = invoke_error(
            aws, deployed_stack, {"action": action, "tenant_id": tenants[1], "run_id": run["run_id"]}
        )
        assert error.startswith("UnknownRun")
    error = invoke_error(
        aws,
        deployed_stack,
        {"action": "start", "tenant_id": tenants[1], "workflow": "order_math", "principal": PRINCIPAL},
    )
    assert error.startswith("UnknownWorkflow")


def test_malformed_spec_is_refused_and_deploys_nothing(
    aws, deployed_stack, tenants, tmp_path: Path, capsys
) -> None:
    bad = {
        **INGEST,
        "name": "broken",
        "nodes": {**INGEST["nodes"], "note": {**INGEST["nodes"]["note"], "next": "nowhere"}},
    }
    spec = tmp_path / "broken.yaml"
    spec.write_text(yaml.safe_dump(bad))
    assert cli.main(["deploy", str(spec), "--tenant", tenants[0], "--stage", STAGE]) == 1
    assert "nowhere" in capsys.readouterr().err
    machines = aws("stepfunctions").list_state_machines()["stateMachines"]
    assert not [m for m in machines if "broken" in m["name"]]
    with get_pool().connection() as conn:
        assert conn.execute(
            "SELECT count(*) FROM workflows WHERE tenant_id = %s AND name = 'broken'", (tenants[0],)
        ).fetchone() == (0,)


def _runs_of(tenant: str, workflow: str) -> list[tuple[str, str | None]]:
    with get_pool().connection() as conn:
        return conn.execute(
            "SELECT r.run_id::text, r.idempotency_key FROM runs r JOIN workflows w"
            " ON w.tenant_id = r.tenant_id AND w.workflow_id = r.workflow_id"
            " WHERE r.tenant_id = %s AND w.name = %s",
            (tenant, workflow),
        ).fetchall()


def _wait_for_key(tenant: str, workflow: str, match, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run_id, key in _runs_of(tenant, workflow):
            if key and match(key):
                return run_id
        time.sleep(1)
    raise AssertionError(f"no {workflow} run of {tenant} was triggered in {timeout_s}s")


def test_sqs_eventbridge_and_s3_start_runs(aws, deployed_stack, tenants, published) -> None:
    tenant = tenants[0]
    request = {"tenant_id": tenant, "workflow": "order_math", "input": ORDER_INPUT, "principal": PRINCIPAL}
    sqs_key, bridge_key = f"sqs-{uuid.uuid4().hex}", f"bridge-{uuid.uuid4().hex}"
    queue = deployed_stack["EventsQueueUrl"]
    aws("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps({**request, "idempotency_key": sqs_key}))
    aws("sqs").send_message(QueueUrl=queue, MessageBody=json.dumps({"tenant_id": tenant}))  # fails alone
    aws("events").put_events(
        Entries=[
            {
                "Source": "aob.tests",
                "DetailType": "aob.run.requested",
                "Detail": json.dumps({**request, "idempotency_key": bridge_key}),
            }
        ]
    )
    object_key = f"triggers/{tenant}/ingest/{uuid.uuid4().hex}.json"
    aws("s3").put_object(Bucket=deployed_stack["ArtifactsBucketName"], Key=object_key, Body=b'{"x": 1}')

    service = RunService(sfn=aws("stepfunctions"), lambda_=aws("lambda"))
    started = {
        "sqs": _wait_for_key(tenant, "order_math", lambda k: k == sqs_key),
        "eventbridge": _wait_for_key(tenant, "order_math", lambda k: k == bridge_key),
        "s3": _wait_for_key(tenant, "ingest", lambda k: object_key in k),
    }
    for trigger, run_id in started.items():
        detail = wait_for_run(aws, deployed_stack, tenant, run_id)
        assert detail["run"]["status"] == "succeeded", (trigger, detail["run"]["error"])
    s3_run = service.get_run(_ref(tenant, started["s3"])).run
    assert (
        s3_run.input["key"] == object_key and s3_run.input["bucket"] == deployed_stack["ArtifactsBucketName"]
    )
    assert s3_run.output["note"]["key"] == object_key


def _ref(tenant: str, run_id: str):
    from aob.runs import RunRef

    return RunRef(tenant_id=tenant, run_id=uuid.UUID(run_id))

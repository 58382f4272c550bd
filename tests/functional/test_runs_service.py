"""Publishing and runs against moto's Step Functions and the real Postgres: versions, the runs row
written before the execution, idempotency, failed starts kept, status refresh, tenant isolation,
and the trigger's partial SQS batch failure."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from aob.db import get_pool
from aob.errors import InvalidInput, RunNotStarted, SpecInvalid, UnknownRun, UnknownWorkflow
from aob.runs import Principal, Publish, RunRef, RunService, StartRun, publish
from aob.tenants import create_tenant
from aob.workflows import WorkflowSpec, parse_spec
from botocore.exceptions import ClientError
from moto import mock_aws

from tests.support import lambda_context, load_handler

REGION = "us-east-1"
SPEC = {
    "name": "math",
    "version": "1",
    "start": "add",
    "nodes": {
        "add": {"type": "tool", "tool": "calculator", "constants": {"expression": "1 + 1"}, "end": True}
    },
}
PRINCIPAL = Principal(subject="user:1", roles=["operator"])


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("stepfunctions", region_name=REGION)


@pytest.fixture
def outputs(sfn: Any) -> dict[str, str]:
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}}]}
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName=f"wf-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(trust)
    )
    names = ["SessionLease", "PolicyCheck", "Metering", "ToolGateway", "ModelGateway", "StepRecorder"]
    arns = {f"{n}FunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:{n}" for n in names}
    return {**arns, "WorkflowExecutionRoleArn": role["Role"]["Arn"]}


@pytest.fixture
def tenant(migrated_database: str) -> str:
    return create_tenant(f"t-{uuid.uuid4().hex[:10]}").tenant_id


def _publish(tenant: str, outputs: dict[str, str], sfn: Any, mode: str = "explicit", spec: Any = None):
    spec = spec if spec is not None else parse_spec(SPEC)
    return publish(Publish(tenant_id=tenant, spec=spec, mode=mode, stage="ft"), outputs, sfn=sfn)


def _machines(sfn: Any, tenant: str) -> list[str]:
    # Other functional tests may share moto's backend: look at this tenant's machines only.
    names = [m["name"] for m in sfn.list_state_machines()["stateMachines"]]
    return [name for name in names if name.startswith(f"aob-ft_{tenant}_")]


def _workflow_rows(tenant: str) -> list[tuple]:
    with get_pool().connection() as conn:
        return conn.execute(
            "SELECT name, version, mode FROM workflows WHERE tenant_id = %s ORDER BY version", (tenant,)
        ).fetchall()


def test_publish_creates_one_version_per_spec_and_mode(tenant, outputs, sfn) -> None:
    first = _publish(tenant, outputs, sfn)
    again = _publish(tenant, outputs, sfn)
    fused = _publish(tenant, outputs, sfn, mode="fused")
    assert (first.version, first.created, again.version, again.created) == (1, True, 1, False)
    assert (fused.version, fused.created) == (2, True)
    assert _workflow_rows(tenant) == [("math", 1, "explicit"), ("math", 2, "fused")]
    machine = sfn.describe_state_machine(stateMachineArn=first.state_machine_arn)
    assert machine["name"] == f"aob-ft_{tenant}_math_v1_explicit"
    assert machine["roleArn"] == outputs["WorkflowExecutionRoleArn"]
    assert outputs["ToolGatewayFunctionArn"] in machine["definition"] and "${" not in machine["definition"]
    assert len(_machines(sfn, tenant)) == 2


def test_invalid_or_foreign_specs_deploy_and_store_nothing(tenant, outputs, sfn) -> None:
    dangling = {**SPEC, "nodes": {"add": {**SPEC["nodes"]["add"], "end": False, "next": "nowhere"}}}
    with pytest.raises(SpecInvalid, match="nowhere"):
        _publish(tenant, outputs, sfn, spec=WorkflowSpec.model_validate(dangling))
    with pytest.raises(InvalidInput, match="tenant_id: workflow math is for tenant 'someone-else'"):
        _publish(tenant, outputs, sfn, spec=parse_spec({**SPEC, "tenant_id": "someone-else"}))
    assert _machines(sfn, tenant) == [] and _workflow_rows(tenant) == []


def _events(tenant: str, run_id: uuid.UUID) -> list[str]:
    with get_pool().connection() as conn:
        rows = conn.execute(
            "SELECT event_type FROM events WHERE tenant_id = %s AND stream_id = %s ORDER BY seq",
            (tenant, f"run:{run_id}"),
        ).fetchall()
    return [r[0] for r in rows]


def test_start_run_names_the_execution_after_the_run_and_dedupes_keys(tenant, outputs, sfn) -> None:
    published = _publish(tenant, outputs, sfn)
    service = RunService(sfn=sfn)
    request = StartRun(
        tenant_id=tenant, workflow="math", input={"x": 1}, principal=PRINCIPAL, idempotency_key="k-1"
    )
    run = service.start_run(request)
    assert (run.status, run.version, run.existing) == ("running", 1, False)
    described = sfn.describe_execution(executionArn=run.execution_arn)
    assert described["name"] == str(run.run_id)
    assert json.loads(described["input"]) == {
        "tenant_id": tenant,
        "principal": {"subject": "user:1", "roles": ["operator"]},
        "run_id": str(run.run_id),
        "session_id": str(run.run_id),
        "input": {"x": 1},
    }
    again = service.start_run(request)
    assert (again.run_id, again.existing) == (run.run_id, True)
    executions = sfn.list_executions(stateMachineArn=published.state_machine_arn)["executions"]
    assert len(executions) == 1
    assert _events(tenant, run.run_id) == ["run.started"]
    with pytest.raises(UnknownWorkflow, match="publish it first"):
        service.start_run(request.model_copy(update={"workflow": "other"}))


class _Execution:
    """DescribeExecution answers with `status` (whatever moto's executor did with the run)."""

    def __init__(self, status: str) -> None:
        self.status = status

    def describe_execution(self, executionArn: str) -> dict:
        stopped = {} if self.status == "RUNNING" else {"stopDate": datetime.now(UTC), "cause": "by the test"}
        return {"executionArn": executionArn, "status": self.status, **stopped}


class _Refusing:
    """A Step Functions client whose StartExecution is throttled."""

    def start_execution(self, **_: Any) -> dict:
        raise ClientError(
            {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "StartExecution"
        )


def test_a_refused_start_is_stored_failed_and_the_same_key_retries_it(tenant, outputs, sfn) -> None:
    _publish(tenant, outputs, sfn)
    request = StartRun(tenant_id=tenant, workflow="math", principal=PRINCIPAL, idempotency_key="k-2")
    with pytest.raises(RunNotStarted, match="same idempotency_key"):
        RunService(sfn=_Refusing()).start_run(request)
    with get_pool().connection() as conn:
        run_id, status, error = conn.execute(
            "SELECT run_id, status, error FROM runs WHERE tenant_id = %s AND idempotency_key = 'k-2'",
            (tenant,),
        ).fetchone()
    assert (status, error["error"]) == ("failed", "ThrottlingException")
    retried = RunService(sfn=sfn).start_run(request)
    assert (retried.run_id, retried.status) == (run_id, "running") and retried.execution_arn
    assert _events(tenant, run_id) == ["run.start_failed", "run.started"]


def test_get_run_persists_the_end_once_and_hides_other_tenants_runs(tenant, outputs, sfn) -> None:
    _publish(tenant, outputs, sfn)
    service = RunService(sfn=sfn)
    run = service.start_run(StartRun(tenant_id=tenant, workflow="math", principal=PRINCIPAL))
    ref = RunRef(tenant_id=tenant, run_id=run.run_id)
    execution = _Execution("RUNNING")
    watching = RunService(sfn=execution)
    assert watching.get_run(ref).run.status == "running"
    execution.status = "ABORTED"
    first, second = watching.get_run(ref), watching.get_run(ref)
    assert first.run.status == second.run.status == "cancelled" and first.run.finished_at
    assert first.chain.ok and first.records == []
    assert _events(tenant, run.run_id) == ["run.started", "run.finished"]
    other = create_tenant(f"o-{uuid.uuid4().hex[:10]}").tenant_id
    with pytest.raises(UnknownRun):
        service.get_run(RunRef(tenant_id=other, run_id=run.run_id))
    with pytest.raises(UnknownRun):
        service.run_summary(RunRef(tenant_id=other, run_id=run.run_id))


def _sqs_event(*bodies: tuple[str, str]) -> dict:
    attributes = {
        "ApproximateReceiveCount": "1",
        "SentTimestamp": "1",
        "SenderId": "s",
        "ApproximateFirstReceiveTimestamp": "1",
    }
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": "r",
                "body": body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": "m",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:aob-events",
                "awsRegion": REGION,
            }
            for message_id, body in bodies
        ]
    }


def test_trigger_fails_only_the_bad_sqs_message(tenant, outputs, sfn, monkeypatch) -> None:
    import aob.runs._service as runs_service

    _publish(tenant, outputs, sfn)
    monkeypatch.setattr(runs_service, "_service", RunService(sfn=sfn))
    good = StartRun(tenant_id=tenant, workflow="math", principal=PRINCIPAL).model_dump_json()
    event = _sqs_event(("m-good", good), ("m-bad", '{"tenant_id": "x"}'), ("m-good", good))
    handler = load_handler("run_trigger")
    response = handler(event, lambda_context("run_trigger"))
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    with get_pool().connection() as conn:
        keys = conn.execute("SELECT idempotency_key FROM runs WHERE tenant_id = %s", (tenant,)).fetchall()
    assert keys == [("m-good",)]  # a redelivered message starts no second run

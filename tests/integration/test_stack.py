"""template.yaml deployed to LocalStack through CloudFormation, and the self-check flow run on it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import aob
from aob.cache import get_redis
from aob.cli import run_execution
from aob.db import get_pool
from aob.deploy import deploy_stack

from tests.integration.conftest import ROOT, deploy_kwargs


def _history(aws, execution_arn: str) -> list[dict[str, Any]]:
    return aws("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]


def _invoke(aws, function: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = aws("lambda").invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    assert "FunctionError" not in response, response["Payload"].read()
    return json.loads(response["Payload"].read())


def test_flow_retries_once_and_writes_postgres_and_redis(aws, deployed_stack: dict[str, str]) -> None:
    described = run_execution(
        deployed_stack["SelfcheckStateMachineArn"], {"message": "it", "fail": "first_attempt"}
    )

    assert described["status"] == "SUCCEEDED", described
    output = json.loads(described["output"])
    record = output["record"]["result"]
    assert record["attempt"] == 2
    assert record["layer_version"] == aob.__version__
    errors = [
        e["taskFailedEventDetails"]["error"]
        for e in _history(aws, described["executionArn"])
        if e["type"] == "TaskFailed"
    ]
    assert errors == ["TransientSelfcheckError"]
    with get_pool().connection() as conn:
        rows = conn.execute(
            "SELECT seq, payload->>'step' FROM events"
            " WHERE tenant_id = 'system' AND stream_id = %s ORDER BY seq",
            (f"selfcheck:{described['name']}",),
        ).fetchall()
    assert rows == [(1, "record"), (2, "confirm")]
    assert json.loads(get_redis().get(record["redis_key"]))["event_id"] == record["event_id"]


def test_handler_exception_is_caught_by_class_name(aws, deployed_stack: dict[str, str]) -> None:
    described = run_execution(deployed_stack["SelfcheckStateMachineArn"], {"fail": "always"})

    assert described["status"] == "FAILED"
    history = _history(aws, described["executionArn"])
    failed = [e["taskFailedEventDetails"] for e in history if e["type"] == "TaskFailed"]
    assert failed[0]["error"] == "SelfcheckFailed"
    cause = json.loads(failed[0]["cause"])
    assert cause["errorType"] == "SelfcheckFailed" and cause["stackTrace"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if e["type"] == "FailStateEntered"]
    assert entered == ["ReportFailure"]


def test_deployed_function_imports_the_layer_package(aws, deployed_stack: dict[str, str]) -> None:
    answer = _invoke(aws, deployed_stack["PingFunctionArn"], {"hello": 1})

    assert answer["layer_version"] == aob.__version__
    # Imported from the unpacked layer (/opt/python), not from this checkout.
    assert answer["layer_path"].endswith("/opt/python/aob")
    assert not answer["layer_path"].startswith(str(ROOT / "layers"))


def test_unchanged_redeploy_is_a_no_op(deployed_stack: dict[str, str]) -> None:
    result = deploy_stack(**deploy_kwargs(ROOT))
    assert not result.changed
    assert result.uploaded == []
    assert result.outputs == deployed_stack


def test_changed_function_is_updated(aws, deployed_stack: dict[str, str], tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    copy.mkdir()
    for part in ("template.yaml", "functions", "statemachines", "layers", "policies"):
        source = ROOT / part
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / part)
    ping = copy / "functions" / "ping" / "app.py"
    ping.write_text(ping.read_text().replace('"ok": True,', '"ok": True, "revision": "changed",'))
    try:
        changed = deploy_stack(**deploy_kwargs(copy))
        assert changed.changed and len(changed.uploaded) == 1
        assert _invoke(aws, deployed_stack["PingFunctionArn"], {})["revision"] == "changed"
    finally:
        restored = deploy_stack(**deploy_kwargs(ROOT))
    assert restored.changed
    time.sleep(0.1)
    assert "revision" not in _invoke(aws, deployed_stack["PingFunctionArn"], {})


def test_events_queue_redrives_to_its_dead_letter_queue(aws, deployed_stack: dict[str, str]) -> None:
    sqs = aws("sqs")
    queue, dlq = deployed_stack["EventsQueueUrl"], deployed_stack["EventsDeadLetterQueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="poison")
    for _ in range(5):  # maxReceiveCount: 5
        received = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=0, WaitTimeSeconds=1)
        assert [m["Body"] for m in received.get("Messages", [])] == ["poison"]
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
    moved = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=2).get("Messages", [])
    assert [m["Body"] for m in moved] == ["poison"]
    sqs.delete_message(QueueUrl=dlq, ReceiptHandle=moved[0]["ReceiptHandle"])


def test_artifacts_bucket_encrypts_objects(aws, deployed_stack: dict[str, str]) -> None:
    s3 = aws("s3")
    bucket = deployed_stack["ArtifactsBucketName"]
    s3.put_object(Bucket=bucket, Key="probe.txt", Body=b"x")
    assert s3.head_object(Bucket=bucket, Key="probe.txt")["ServerSideEncryption"] == "AES256"

"""Publishing workflows and driving their runs through the deployed runs function, for integration tests."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from aob.runs import Publish, PublishedWorkflow, publish
from aob.workflows import load_spec

STAGE = os.environ.get("AOB_TEST_STAGE", "test")
ENDED = ("succeeded", "failed", "cancelled")


def publish_spec(aws, stack: dict[str, str], tenant: str, spec: Any, mode: str) -> PublishedWorkflow:
    """Publish a spec (a parsed WorkflowSpec, or the path of a spec file) for the tenant."""
    if isinstance(spec, str | Path):
        spec = load_spec(spec)
    request = Publish(tenant_id=tenant, spec=spec, mode=mode, stage=STAGE)
    return publish(request, stack, sfn=aws("stepfunctions"))


def invoke(aws, stack: dict[str, str], payload: dict[str, Any]) -> dict[str, Any]:
    """The runs function's answer; AssertionError with the error type and message if it failed."""
    response = aws("lambda").invoke(FunctionName=stack["RunsFunctionArn"], Payload=json.dumps(payload))
    body = json.loads(response["Payload"].read())
    if response.get("FunctionError"):
        raise AssertionError(f"{body['errorType']}: {body['errorMessage']}")
    return body


def invoke_error(aws, stack: dict[str, str], payload: dict[str, Any]) -> str:
    """`<errorType>: <errorMessage>` of a runs-function call that must fail."""
    response = aws("lambda").invoke(FunctionName=stack["RunsFunctionArn"], Payload=json.dumps(payload))
    body = json.loads(response["Payload"].read())
    assert response.get("FunctionError"), body
    return f"{body['errorType']}: {body['errorMessage']}"


def wait_for_run(
    aws,
    stack: dict[str, str],
    tenant: str,
    run_id: str,
    until: tuple[str, ...] = ENDED,
    timeout_s: float = 180,
) -> dict[str, Any]:
    """The run's detail once its status is one of `until` (the terminal ones by default)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        detail = invoke(aws, stack, {"action": "get", "tenant_id": tenant, "run_id": run_id})
        if detail["run"]["status"] in until:
            return detail
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not reach {until} in {timeout_s}s")

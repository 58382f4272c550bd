"""The claim check on LocalStack: a tool result past the 256 KB state limit goes to the artifacts
bucket, the run carries its claim, and the next tool node reads the full content back."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from aob.db import get_pool
from aob.tenants import create_tenant
from aob.workflows import parse_spec

from tests.integration.workflow_runs import invoke, publish_spec, wait_for_run

pytestmark = pytest.mark.integration

PRINCIPAL = {"subject": "user:claims-test", "roles": ["operator"]}
REPORT = {"topic": "sales", "sections": 1000, "words_per_section": 40}  # about 300 KB of JSON
SPEC = {
    "name": "big_report",
    "version": "1",
    "start": "generate",
    "nodes": {
        "generate": {"type": "tool", "tool": "generate_report", "constants": REPORT, "next": "stats"},
        "stats": {
            "type": "tool",
            "tool": "report_stats",
            "args": {"report": "$.generate.result"},  # the claim, resolved by the gateway
            "end": True,
        },
    },
}


@pytest.mark.parametrize("mode", ["fused", "explicit"])
def test_a_result_past_the_state_limit_reaches_the_next_tool_by_claim(aws, deployed_stack, mode) -> None:
    tenant = f"claims-{uuid.uuid4().hex[:8]}"
    create_tenant(tenant)
    published = publish_spec(aws, deployed_stack, tenant, parse_spec(SPEC), mode)

    run = invoke(
        aws,
        deployed_stack,
        {
            "action": "start",
            "tenant_id": tenant,
            "workflow": "big_report",
            "version": published.version,
            "input": {},
            "principal": PRINCIPAL,
        },
    )
    detail = wait_for_run(aws, deployed_stack, tenant, run["run_id"])

    assert detail["run"]["status"] == "succeeded", detail["run"]["error"]
    output = detail["run"]["output"]
    claim = output["generate"]["result"]["$claim"]
    assert output["generate"]["value"]["claimed"] is True
    assert claim["bucket"] == deployed_stack["ArtifactsBucketName"]
    assert claim["key"].startswith(f"claims/{tenant}/{run['run_id']}/")
    body = aws("s3").get_object(Bucket=claim["bucket"], Key=claim["key"])["Body"].read()
    assert len(body) > 256 * 1024 and hashlib.sha256(body).hexdigest() == claim["sha256"]
    # The second tool saw the whole report: every section's words, and the stored bytes' digest.
    assert output["stats"]["result"] == {"sections": 1000, "words": 40_000, "sha256": claim["sha256"]}
    with get_pool().connection() as conn:
        records = [
            row[0]
            for row in conn.execute(
                "SELECT record FROM decision_records WHERE tenant_id = %s AND run_id = %s",
                (tenant, run["run_id"]),
            ).fetchall()
        ]
    tools = [record["tool"] for record in records if record.get("tool")]
    assert {tool["name"] for tool in tools} == {"generate_report", "report_stats"}
    assert all(len(json.dumps(record)) < 64 * 1024 for record in records)  # claims, not payloads
    produced = next(tool for tool in tools if tool["name"] == "generate_report")
    assert produced["output"] == {"$claim": claim}

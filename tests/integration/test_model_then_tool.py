"""Model gateway then tool gateway as Lambda tasks of one execution on LocalStack, with the real vLLM."""

from __future__ import annotations

import json
import uuid

from aob.cli import run_execution
from aob.db import get_pool
from aob.tenants import create_tenant

_WORKFLOW = """
INSERT INTO workflows (tenant_id, name, version, spec, spec_sha256)
VALUES (%s, 'model-then-tool', 1, '{}', 'test') RETURNING workflow_id
"""
_RUN = "INSERT INTO runs (tenant_id, workflow_id, status) VALUES (%s, %s, 'running') RETURNING run_id"
_STEP = "INSERT INTO steps (tenant_id, run_id, state_name, kind) VALUES (%s, %s, %s, %s) RETURNING step_id"


def _run_with_steps(tenant_id: str) -> tuple[str, str, str]:
    with get_pool().connection() as conn, conn.transaction():
        workflow_id = conn.execute(_WORKFLOW, (tenant_id,)).fetchone()[0]
        run_id = conn.execute(_RUN, (tenant_id, workflow_id)).fetchone()[0]
        model_step = conn.execute(_STEP, (tenant_id, run_id, "CallModel", "model")).fetchone()[0]
        tool_step = conn.execute(_STEP, (tenant_id, run_id, "CallTool", "tool")).fetchone()[0]
    return str(run_id), str(model_step), str(tool_step)


def _ledger(tenant_id: str) -> list[tuple[str, int, int]]:
    with get_pool().connection() as conn:
        return conn.execute(
            "SELECT capability, input_tokens, output_tokens FROM usage_ledger WHERE tenant_id = %s"
            " ORDER BY capability",
            (tenant_id,),
        ).fetchall()


def test_execution_calls_model_gateway_then_tool_gateway(
    aws, deployed_stack: dict[str, str], model_ready: str
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    create_tenant(tenant, plan="pro")
    run_id, model_step, tool_step = _run_with_steps(tenant)
    flow_input = {
        "tenant_id": tenant,
        "principal": {"subject": "user:ops-1", "roles": ["operator"]},
        "run_id": run_id,
        "model": {
            "step_id": model_step,
            "tier": "small",
            "messages": [{"role": "user", "content": "Which order should I look up?"}],
            "max_tokens": 8,
            "data_classes": ["internal"],
            "extra_body": {"ignore_eos": True},
        },
        "tool": {
            "step_id": tool_step,
            "name": "lookup_order",
            "args": {"order_id": "o-1001"},
            "data_classes": ["internal"],
        },
    }

    described = run_execution(deployed_stack["ModelThenToolStateMachineArn"], flow_input, timeout_s=180)

    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    output = json.loads(described["output"])
    model = output["model_result"]["value"]
    assert model["provider"] == "local-vllm" and model["model"] == "aob-tiny"
    assert model["usage"]["completion_tokens"] == 8 and model["usage"]["prompt_tokens"] > 0
    assert model["choices"][0]["message"]["content"]
    tool = output["tool_result"]["value"]
    assert tool["tool"] == "lookup_order" and tool["result"]["order_id"] == "o-1001"
    capabilities = {row[0] for row in _ledger(tenant)}
    assert len(capabilities) == 2, _ledger(tenant)

"""The document pipeline example (examples/document_pipeline) on LocalStack, in both governance modes.

A deterministic workflow: a map over the documents, a parallel of two built-in tools per
document, transforms. The test checks what its user reads: each document's stats and keywords,
the report's headline, and that fused mode takes fewer transitions than explicit.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aob.db import get_pool
from aob.tenants import create_tenant

from tests.integration.workflow_runs import invoke, publish_spec, wait_for_run

pytestmark = pytest.mark.integration

# The tenant's usage_ledger rows, and those of one run.
LEDGER_ROWS = "SELECT count(*), count(*) FILTER (WHERE run_id = %s) FROM usage_ledger WHERE tenant_id = %s"


def _ledger_rows(tenant: str) -> int:
    with get_pool().connection() as conn:
        row = conn.execute(LEDGER_ROWS, (None, tenant)).fetchone()
    return row[0] if row else 0


SPEC = Path(__file__).resolve().parents[2] / "examples" / "document_pipeline" / "workflow.yaml"
PRINCIPAL = {"subject": "user:pipeline-test", "roles": ["operator"]}
DOCUMENTS = [
    {"id": "d1", "text": "Refunds are quick. Refunds are fair! Customers like refunds and quick answers."},
    {"id": "d2", "text": "Orders ship daily. Shipping tracks every order, and tracking helps orders."},
]
# What text_stats and extract_keywords (top 3; ties alphabetical) make of DOCUMENTS.
EXPECTED = [
    {
        "id": "d1",
        "words": 12,
        "sentences": 3,
        "reading_time_s": 4,
        "keywords": [
            {"word": "refunds", "count": 3},
            {"word": "quick", "count": 2},
            {"word": "answers", "count": 1},
        ],
    },
    {
        "id": "d2",
        "words": 11,
        "sentences": 2,
        "reading_time_s": 4,
        "keywords": [
            {"word": "orders", "count": 2},
            {"word": "daily", "count": 1},
            {"word": "every", "count": 1},
        ],
    },
]


@pytest.fixture(scope="module")
def tenant(deployed_stack: dict[str, str]) -> str:
    name = f"pipe-{uuid.uuid4().hex[:8]}"
    create_tenant(name)
    return name


def test_document_pipeline_reports_each_document_in_both_modes(aws, deployed_stack, tenant) -> None:
    summaries = {}
    ledger_rows = _ledger_rows(tenant)
    for mode in ("explicit", "fused"):
        published = publish_spec(aws, deployed_stack, tenant, SPEC, mode)
        start = {
            "action": "start",
            "tenant_id": tenant,
            "workflow": "document_pipeline",
            "version": published.version,
            "input": {"documents": DOCUMENTS},
            "principal": PRINCIPAL,
        }
        run = invoke(aws, deployed_stack, start)
        detail = wait_for_run(aws, deployed_stack, tenant, run["run_id"])
        assert detail["run"]["status"] == "succeeded", (mode, detail["run"]["error"])
        output = detail["run"]["output"]
        assert output["report"]["documents"] == EXPECTED, mode
        assert output["report"]["document_count"] == 2
        assert output["headline"]["text"] == "2 documents analysed"
        # Four tool steps (two tools per document), each one DecisionRecord on a valid chain.
        tools = sorted(r["record"]["tool"]["name"] for r in detail["records"] if r["record"]["tool"])
        assert tools == ["extract_keywords"] * 2 + ["text_stats"] * 2, mode
        assert detail["chain"]["ok"], detail["chain"]
        with get_pool().connection() as conn:
            charged = conn.execute(LEDGER_ROWS, (run["run_id"], tenant)).fetchone()
        # One usage_ledger row per governed step (four tool calls), all of this run: charged once.
        assert charged is not None and (charged[0] - ledger_rows, charged[1]) == (4, 4), (mode, charged)
        ledger_rows = charged[0]
        summaries[mode] = invoke(
            aws, deployed_stack, {"action": "summary", "tenant_id": tenant, "run_id": run["run_id"]}
        )
    assert 0 < summaries["fused"]["state_transitions"] < summaries["explicit"]["state_transitions"]

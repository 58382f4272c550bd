"""The research agent example (examples/research_agent) on LocalStack with the real vLLM, both modes.

The agent's model calls go to the local vLLM server (aob-tiny: random weights, so its words are
noise, but vLLM constrains a forced tool call to a well-formed one). Each round forces
web_search, which the tool gateway sends to the example's search service on 127.0.0.1:8765 (the
address of the shipped tools file); then the summary node answers. The test checks what a user
of the example sees: the run succeeds, the search service was really asked, the transcript and
summary exist, every model and tool step left a DecisionRecord on a valid chain, and fused mode
takes fewer transitions. A principal the policy keeps from web_search still gets an answer: the
denials come back to the model as error tool messages instead of failing the run.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aob.tenants import create_tenant

from tests.integration.workflow_runs import invoke, publish_spec, wait_for_run

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "research_agent"
SPEC = EXAMPLE / "workflow.yaml"
sys.path.insert(0, str(EXAMPLE))
from search_service import SearchService  # noqa: E402 - the example's own module

MODES = ("explicit", "fused")
SEARCH_PORT = 8765  # functions/tool_gateway/tools.json sends web_search here
OPERATOR = {"subject": "user:researcher", "roles": ["operator"]}
VIEWER = {"subject": "user:reader", "roles": ["viewer"]}  # policies/data.json: no web_search
QUESTION = "How tall is the Eiffel Tower?"
MAX_STEPS = 2  # the example's agent: two rounds, each forced to call web_search once
RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def search() -> Iterator[SearchService]:
    try:
        service = SearchService(port=SEARCH_PORT)
    except OSError as exc:
        pytest.fail(f"port {SEARCH_PORT} is taken ({exc}): stop what serves it (search_service.py?)")
    with service:
        yield service


@pytest.fixture(scope="module")
def tenant(deployed_stack: dict[str, str]) -> str:
    name = f"research-{uuid.uuid4().hex[:8]}"
    create_tenant(name, plan="pro")
    return name


@pytest.fixture(scope="module")
def versions(aws, deployed_stack: dict[str, str], tenant: str) -> dict[str, int]:
    return {mode: publish_spec(aws, deployed_stack, tenant, SPEC, mode).version for mode in MODES}


def run(aws, stack: dict[str, str], tenant: str, version: int, principal: dict[str, Any]) -> dict[str, Any]:
    """Start a run of the example and wait for its end: the runs function's `get` of it."""
    start = {
        "action": "start",
        "tenant_id": tenant,
        "workflow": "research_agent",
        "version": version,
        "input": {"question": QUESTION},
        "principal": principal,
    }
    started = invoke(aws, stack, start)
    return wait_for_run(aws, stack, tenant, started["run_id"], timeout_s=RUN_TIMEOUT_S)


def tool_messages(output: dict[str, Any]) -> list[dict[str, Any]]:
    return [message for message in output["research"]["messages"] if message["role"] == "tool"]


def test_the_agent_searches_then_summarizes_in_both_modes(
    aws, deployed_stack, model_ready, search, tenant, versions
) -> None:
    summaries = {}
    for mode in MODES:
        asked_before = len(search.queries)
        detail = run(aws, deployed_stack, tenant, versions[mode], OPERATOR)
        assert detail["run"]["status"] == "succeeded", (mode, detail["run"]["error"])
        output = detail["run"]["output"]

        # Each round proposed one web_search call; each call is answered by a tool message.
        assert output["research"]["answer"]["steps"] == MAX_STEPS, mode
        proposed = [
            call
            for message in output["research"]["messages"]
            if message["role"] == "assistant"
            for call in message["tool_calls"]
        ]
        assert [call["function"]["name"] for call in proposed] == ["web_search"] * MAX_STEPS, mode
        answered = tool_messages(output)
        assert [m["tool_call_id"] for m in answered] == [call["id"] for call in proposed], mode
        assert isinstance(output["summarize"]["text"], str) and output["summarize"]["text"], mode

        # The calls reached the search service; every one that ran left a tool record.
        asked = search.queries[asked_before:]
        assert asked, f"{mode}: the search service was never asked"
        records = [stored["record"] for stored in detail["records"]]
        searches = [r["tool"] for r in records if r["tool"] and r["tool"]["name"] == "web_search"]
        assert searches, (mode, answered)
        assert {s["input"]["query"] for s in searches} <= set(asked), mode
        for searched in searches:
            assert searched["output"]["query"] == searched["input"]["query"], mode

        # Two agent rounds and the summary: three model records, on one valid chain.
        assert [r["node"]["name"] for r in records if r["model"]] == ["research"] * MAX_STEPS + ["summarize"]
        assert {r["outcome"] for r in records} == {"succeeded"}, mode
        assert detail["chain"]["ok"], (mode, detail["chain"])
        assert detail["chain"]["records"] == len(records), mode
        summaries[mode] = invoke(
            aws, deployed_stack, {"action": "summary", "tenant_id": tenant, "run_id": detail["run"]["run_id"]}
        )
    assert 0 < summaries["fused"]["state_transitions"] < summaries["explicit"]["state_transitions"]


def test_a_denied_search_comes_back_to_the_model_and_the_run_still_answers(
    aws, deployed_stack, model_ready, search, tenant, versions
) -> None:
    for mode in MODES:
        asked_before = len(search.queries)
        detail = run(aws, deployed_stack, tenant, versions[mode], VIEWER)
        assert detail["run"]["status"] == "succeeded", (mode, detail["run"]["error"])
        output = detail["run"]["output"]

        errors = [json.loads(message["content"]) for message in tool_messages(output)]
        assert [error["error"] for error in errors] == ["PolicyDenied"] * MAX_STEPS, mode
        assert all("web_search" in error["message"] for error in errors), errors
        assert output["summarize"]["text"], mode
        assert search.queries[asked_before:] == [], f"{mode}: a denied call reached the search service"
        records = [stored["record"] for stored in detail["records"]]
        assert [r["node"]["name"] for r in records if r["model"]] == ["research"] * MAX_STEPS + ["summarize"]
        assert detail["chain"]["ok"], (mode, detail["chain"])

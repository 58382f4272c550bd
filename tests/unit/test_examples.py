"""The example workflows: they compile, their committed ASL is current, and what they rely on holds.

Covers the compiler's tool definitions (filled from the tool gateway's registry, unknown names
refused), the research agent's transcript states (run by moto's interpreter, which LocalStack
shares), the document pipeline's ASL in moto's parser, and the catalogue entries of its tools.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aob.errors import SpecInvalid
from aob.llm import ChatRequest
from aob.policy import RegoPolicyEngine, policy_files, read_bundle, sign_bundle
from aob.tools import ToolRegistry
from aob.workflows import load_spec, parse_spec
from aob.workflows._tools import GATEWAY_TOOLS_FILE
from aob.workflows.compiler import Mode, compile_spec, compiled_path
from aob.workflows.spec import AgentNode, MapNode, ModelNode, Node, ParallelNode, ToolNode
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted((ROOT / "examples").glob("*/workflow.yaml"))
RESEARCH = ROOT / "examples" / "research_agent" / "workflow.yaml"
PIPELINE = ROOT / "examples" / "document_pipeline" / "workflow.yaml"
MODES: tuple[Mode, ...] = ("explicit", "fused")
sys.path.insert(0, str(RESEARCH.parent))
from search_service import SearchService, search  # noqa: E402 - the example's own module


def every_node(nodes: dict[str, Node]) -> Iterator[tuple[str, Node]]:
    """Each node of a scope and of the branches and iterators inside it."""
    for name, node in nodes.items():
        yield name, node
        if isinstance(node, ParallelNode):
            for branch in node.branches:
                yield from every_node(branch.nodes)
        if isinstance(node, MapNode):
            yield from every_node(node.iterator.nodes)


def model_spec(node: dict[str, Any]) -> dict[str, Any]:
    """A one-node spec: a model call `ask` inside a map's iterator (so the error path is nested)."""
    ask = {"type": "model", "tier": "small", "prompt": "p", "end": True, **node}
    each = {
        "type": "map",
        "items_path": "$.xs",
        "end": True,
        "iterator": {"start": "ask", "nodes": {"ask": ask}},
    }
    return {"name": "w", "version": "1", "start": "each", "nodes": {"each": each}}


def test_the_examples_are_all_found() -> None:
    assert {path.parent.name for path in SPECS} >= {"support_triage", "research_agent", "document_pipeline"}


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda path: path.parent.name)
def test_each_example_compiles_to_its_committed_asl_in_both_modes(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    for mode in MODES:
        committed = json.loads(compiled_path(spec_path, mode).read_text())
        assert committed == compile_spec(spec, mode).asl, (
            f"regenerate: python -m aob.workflows.compiler {spec_path.relative_to(ROOT)}"
        )


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda path: path.parent.name)
def test_fused_takes_fewer_transitions_and_lambda_calls_on_every_governed_step(spec_path: Path) -> None:
    spec = load_spec(spec_path)
    explicit, fused = (compile_spec(spec, mode).stats for mode in MODES)
    governed = [
        name for name, node in every_node(spec.nodes) if isinstance(node, ModelNode | ToolNode | AgentNode)
    ]

    assert governed
    for name in governed:
        assert fused[name].transitions_per_pass < explicit[name].transitions_per_pass, name
        assert fused[name].lambda_invocations < explicit[name].lambda_invocations, name


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda path: path.parent.name)
def test_no_example_needs_jsonata(spec_path: Path) -> None:
    """LocalStack cannot evaluate JSONata offline (it downloads a Java runtime for it)."""
    for mode in MODES:
        assert "JSONata" not in compiled_path(spec_path, mode).read_text()


@pytest.mark.parametrize("spec_path", SPECS, ids=lambda path: path.parent.name)
def test_no_example_run_ends_on_a_raw_approval_timeout(spec_path: Path) -> None:
    """Every States.Timeout catch turns the timeout into ApprovalRejected before any Fail state.

    LocalStack ends a Fail state whose ErrorPath resolves to States.Timeout as States.Runtime, so a
    run that waited in vain would fail with an error that says nothing about the approval.
    """
    for mode in MODES:
        states = json.loads(compiled_path(spec_path, mode).read_text())["States"]
        for name, state in states.items():
            for catch in state.get("Catch", []):
                if "States.Timeout" in catch["ErrorEquals"]:
                    assert catch["ErrorEquals"] == ["States.Timeout"], name
                    timed_out = states[catch["Next"]]
                    assert timed_out["Type"] == "Pass" and timed_out["ResultPath"] == "$.error", name
                    assert timed_out["Parameters"]["Error"] == "ApprovalRejected", name


@pytest.mark.parametrize("mode", MODES)
def test_the_agents_model_calls_carry_each_tools_full_definition(mode: Mode) -> None:
    states = compile_spec(load_spec(RESEARCH), mode).asl["States"]
    payload = states["ResearchCallModel"]["Parameters"]["Payload"]
    web_search, calculator = payload["tools"]

    assert web_search == {
        "type": "function",
        "function": {
            "name": "web_search",
            "description": "Search the web: the best two results.",
            "parameters": {
                "additionalProperties": False,
                "properties": {"query": {"description": "a few words", "maxLength": 100, "type": "string"}},
                "required": ["query"],
                "type": "object",
            },
        },
    }
    assert calculator["function"]["description"].startswith("Evaluate arithmetic")
    assert calculator["function"]["parameters"]["required"] == ["expression"]
    assert "title" not in calculator["function"]["parameters"]["properties"]["expression"]
    assert payload["tool_choice"] == {"type": "function", "function": {"name": "web_search"}}
    # The model gateway takes them as they are.
    request = ChatRequest.model_validate(
        {
            "tenant_id": "acme",
            "principal": {"subject": "user-1"},
            "tier": payload["tier"],
            "messages": [{"role": "user", "content": "q"}],
            "tools": payload["tools"],
            "tool_choice": payload["tool_choice"],
            "max_tokens": payload["max_tokens"],
        }
    )
    assert [tool.function.name for tool in request.tools or []] == ["web_search", "calculator"]


def test_a_tool_name_as_tool_choice_forces_that_tool() -> None:
    spec = parse_spec(model_spec({"tools": ["calculator", "lookup_order"], "tool_choice": "lookup_order"}))
    each = compile_spec(spec, "fused").asl["States"]["Each"]
    payload = each["ItemProcessor"]["States"]["Ask"]["Parameters"]["Payload"]

    assert payload["tool_choice"] == {"type": "function", "function": {"name": "lookup_order"}}
    assert [tool["function"]["name"] for tool in payload["tools"]] == ["calculator", "lookup_order"]


def test_a_model_call_without_tools_offers_none() -> None:
    spec = parse_spec(model_spec({}))
    payload = compile_spec(spec, "fused").asl["States"]["Each"]["ItemProcessor"]["States"]["Ask"]
    assert {"tools", "tool_choice"}.isdisjoint(payload["Parameters"]["Payload"])


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        (
            {"tools": ["web_search", "web_serach"]},
            "nodes.each.iterator.nodes.ask.tools.1: no tool 'web_serach'; known tools: calculator, "
            "extract_keywords, generate_report, issue_refund, lookup_order, report_stats, text_stats, "
            "web_search "
            "(define it in the tool gateway's tools file)",
        ),
        (
            {"tools": ["calculator"], "tool_choice": "web_search"},
            "nodes.each.iterator.nodes.ask.tool_choice: 'web_search' is neither auto, required, none "
            "nor one of the node's tools (calculator)",
        ),
        (
            {"tool_choice": "required"},
            "nodes.each.iterator.nodes.ask.tool_choice: 'required' needs tools; "
            "list them in nodes.each.iterator.nodes.ask.tools",
        ),
    ],
)
def test_unknown_tools_are_spec_errors_naming_node_and_field(node: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecInvalid) as refused:
        parse_spec(model_spec(node))
    assert refused.value.problems == [problem]


def test_an_unknown_agent_tool_is_refused_before_compiling() -> None:
    spec = {
        "name": "w",
        "version": "1",
        "start": "agent",
        "nodes": {
            "agent": {
                "type": "agent",
                "tier": "small",
                "prompt": "p",
                "tools": ["nope"],
                "max_steps": 1,
                "end": True,
            }
        },
    }
    with pytest.raises(SpecInvalid, match=r"nodes\.agent\.tools\.0: no tool 'nope'"):
        parse_spec(spec)


def test_tools_come_from_the_tools_file_the_gateway_ships(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = {
        "tools": [
            {
                "name": "kb_search",
                "kind": "http",
                "description": "Search the knowledge base",
                "method": "GET",
                "url": "https://kb.internal/search",
                "allowed_hosts": ["kb.internal"],
                "args": {"q": {"type": "string"}},
            }
        ]
    }
    (tmp_path / "tools.json").write_text(json.dumps(tools))
    monkeypatch.setenv("AOB_TOOLS_FILE", str(tmp_path / "tools.json"))

    spec = parse_spec(model_spec({"tools": ["kb_search"]}))
    ask = compile_spec(spec, "fused").asl["States"]["Each"]["ItemProcessor"]["States"]["Ask"]
    assert ask["Parameters"]["Payload"]["tools"][0]["function"]["description"] == "Search the knowledge base"
    with pytest.raises(SpecInvalid, match="no tool 'web_search'"):  # not in this deployment's file
        parse_spec(model_spec({"tools": ["web_search"]}))


def test_the_search_service_answers_the_shipped_web_search_tool(tmp_path: Path) -> None:
    assert [result["title"] for result in search("the capital of France")["results"]] == ["Paris"]
    assert search("zebra") == {"query": "zebra", "results": []}
    with SearchService() as service:
        # The shipped definition, pointed at this test's port.
        shipped = (
            (ROOT / GATEWAY_TOOLS_FILE).read_text().replace("127.0.0.1:8765", f"127.0.0.1:{service.port}")
        )
        (tmp_path / "tools.json").write_text(shipped)
        web_search = ToolRegistry.load(tmp_path / "tools.json", lambda: __import__("httpx").Client()).get(
            "web_search"
        )
        result = web_search.execute(web_search.validate({"query": "Eiffel Tower height"}), "tool:" + "0" * 64)
        with urllib.request.urlopen(f"{service.url}/search?q=vLLM") as response:
            body = response.read()

    assert result == search("Eiffel Tower height")
    assert result["results"][0]["title"] == "Eiffel Tower"  # type: ignore[index, call-overload]
    assert len(body) < 400  # a few hundred bytes: the local model's context is small


def test_the_document_tools_are_open_to_every_role_on_every_plan() -> None:
    key = Ed25519PrivateKey.generate()
    engine = RegoPolicyEngine(
        read_bundle(sign_bundle(policy_files(ROOT / "policies"), key, "t"), {"t": key.public_key()})
    )
    for tool in ("text_stats", "extract_keywords"):
        action = {"kind": "tool", "tool": tool, "args": {"text": "x"}, "data_classes": ["pii"]}
        evaluation = engine.evaluate(
            {
                "tenant": {"id": "acme", "plan": "free", "status": "active"},
                "principal": {"subject": "user-1", "roles": ["viewer"]},
                "action": action,
            }
        )
        assert (evaluation.allow, evaluation.reasons) == (True, ()), tool


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # moto intercepts AWS hostnames only; `make` points AWS_ENDPOINT_URL at LocalStack.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield boto3.client("stepfunctions", region_name="us-east-1")


def create(sfn: Any, name: str, asl: dict[str, Any]) -> str:
    definition = re.sub(
        r"\$\{(\w+)\}",
        lambda found: f"arn:aws:lambda:us-east-1:123456789012:function:{found[1]}",
        json.dumps(asl),
    )
    created = sfn.create_state_machine(
        name=name, definition=definition, roleArn="arn:aws:iam::123456789012:role/sfn"
    )
    return str(created["stateMachineArn"])


@pytest.mark.parametrize("mode", MODES)
def test_the_document_pipeline_passes_the_step_functions_parser(sfn: Any, mode: Mode) -> None:
    asl = json.loads(compiled_path(PIPELINE, mode).read_text())
    assert create(sfn, f"pipeline-{mode}", asl).endswith(f"pipeline-{mode}")


def test_the_agent_appends_the_reply_and_tool_results_to_its_transcript(sfn: Any) -> None:
    """The committed RecordStep states, run by moto's interpreter on a round with two tool calls."""
    states = json.loads(compiled_path(RESEARCH, "fused").read_text())["States"]
    round_states = {
        name: states[name]
        for name in ("ResearchRecordStep", "ResearchJoinMessages", "ResearchAppendMessages")
    }
    asl = {
        "StartAt": "ResearchRecordStep",
        "States": {**round_states, "ResearchUnderLimit": {"Type": "Succeed"}},
    }
    calls = [
        {
            "id": f"c{index}",
            "type": "function",
            "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
        }
        for index in (1, 2)
    ]
    reply = {"role": "assistant", "content": None, "refusal": None, "audio": None, "tool_calls": calls}
    tool_messages = [
        {"role": "tool", "tool_call_id": f"c{index}", "content": '{"value": 2.0}'} for index in (1, 2)
    ]
    question = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    research = {"steps": 0, "messages": question, "reply": {"message": reply}, "tool_messages": tool_messages}

    arn = create(sfn, "record-step", asl)
    execution = sfn.start_execution(
        stateMachineArn=arn, input=json.dumps({"run_id": "r", "research": research})
    )
    for _ in range(100):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            break
        time.sleep(0.05)

    assert described["status"] == "SUCCEEDED", described.get("cause")
    output = json.loads(described["output"])
    assert output["run_id"] == "r"
    assert output["research"]["steps"] == 1
    said = {"role": "assistant", "content": None, "tool_calls": calls}  # the provider's extra fields left out
    assert output["research"]["messages"] == [*question, said, *tool_messages]
    assert output["research"]["reply"] == {"message": reply}  # the answer state still reads it


def run_states(sfn: Any, name: str, asl: dict[str, Any], state_input: dict[str, Any]) -> dict[str, Any]:
    """The output of a successful execution of asl, run by moto's interpreter."""
    execution = sfn.start_execution(stateMachineArn=create(sfn, name, asl), input=json.dumps(state_input))
    for _ in range(100):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    return dict(json.loads(described["output"]))


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_call_the_model_got_wrong_comes_back_to_it_as_an_error_message(sfn: Any, mode: Mode) -> None:
    """The agent's tool iterator catches the errors the model can fix; anything else still fails the run."""
    iterator = json.loads(compiled_path(RESEARCH, mode).read_text())["States"]["ResearchCallTools"]
    states = iterator["ItemProcessor"]["States"]
    fixable, anything = states["ResearchCallTool"]["Catch"]
    assert set(fixable["ErrorEquals"]) == {
        "InvalidToolArguments",
        "UnknownTool",
        "ToolFailed",
        "ToolResponseTooLarge",
        "PolicyDenied",
    }
    assert (fixable["Next"], anything["ErrorEquals"]) == ("ResearchToolFailed", ["States.ALL"])
    assert states[anything["Next"]]["Type"] == "Fail"

    call = {"id": "c1", "type": "function", "function": {"name": "web_search", "arguments": "{}"}}
    message = 'invalid arguments for tool web_search: query: "Field required"'
    cause = {"errorMessage": message, "errorType": "InvalidToolArguments", "stackTrace": ["..."]}
    error = {"Error": "InvalidToolArguments", "Cause": json.dumps(cause)}
    failed = {"StartAt": "ResearchToolFailed", "States": states}
    answer = run_states(sfn, f"tool-error-{mode}", failed, {"call": call, "error": error})

    assert (answer["role"], answer["tool_call_id"]) == ("tool", "c1")
    assert json.loads(answer["content"]) == {"error": "InvalidToolArguments", "message": message}
    if mode == "explicit":  # the policy gate's denial, recorded before, is the model's to read too
        denied = {"StartAt": "ResearchCallToolsRecordDenial", "States": states}
        answer = run_states(sfn, "tool-denied", denied, {"call": call, "denied": {"reasons": ["no web"]}})
        assert json.loads(answer["content"]) == {
            "error": "PolicyDenied",
            "message": 'policy denied tool web_search: ["no web"]',
        }


def gateway_stubbed(states: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    """The states with each Lambda task a Pass giving what it would: `results[tool]`, or a lease."""
    stubbed: dict[str, Any] = {}
    for name, state in states.items():
        state = dict(state)
        if str(state.get("Resource", "")).startswith("arn:aws:states:::lambda:invoke"):
            tool = state["Parameters"]["Payload"].get("tool")
            value = {"value": {}, "result": results[tool]} if tool else {"value": {"fencing_token": 1}}
            kept = {key: state[key] for key in ("ResultPath", "Next", "End") if key in state}
            state = {"Type": "Pass", "Result": value, **kept}
        if "Branches" in state:
            state["Branches"] = [
                {**b, "States": gateway_stubbed(b["States"], results)} for b in state["Branches"]
            ]
        if "ItemProcessor" in state:
            processor = state["ItemProcessor"]
            state["ItemProcessor"] = {**processor, "States": gateway_stubbed(processor["States"], results)}
        stubbed[name] = state
    return stubbed


def test_the_document_pipeline_gathers_each_documents_summary_into_the_report(sfn: Any) -> None:
    """Fused mode, the gateway's Lambda tasks replaced by the results the built-ins give."""
    text = "Policies gate every step. Every step is metered and recorded!"
    registry = ToolRegistry.load(None, lambda: __import__("httpx").Client())
    results = {
        tool: registry.get(tool).execute(registry.get(tool).validate(args), "tool:" + "0" * 64)
        for tool, args in {
            "text_stats": {"text": text},
            "extract_keywords": {"text": text, "top_n": 3},
        }.items()
    }
    asl = json.loads(compiled_path(PIPELINE, "fused").read_text())
    arn = create(sfn, "pipeline-run", {**asl, "States": gateway_stubbed(asl["States"], results)})
    documents = [{"id": "d1", "text": text}, {"id": "d2", "text": text}]
    run = {"tenant_id": "acme", "principal": {"subject": "u"}, "run_id": "r", "session_id": "s"}
    execution = sfn.start_execution(
        stateMachineArn=arn, input=json.dumps({**run, "input": {"documents": documents}})
    )
    for _ in range(200):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        if described["status"] != "RUNNING":
            break
        time.sleep(0.05)

    assert described["status"] == "SUCCEEDED", described.get("cause")
    output = json.loads(described["output"])
    summary = {
        "words": 10,
        "sentences": 2,
        "reading_time_s": 3,
        "keywords": [
            {"word": "every", "count": 2},  # ties in alphabetical order
            {"word": "step", "count": 2},
            {"word": "gate", "count": 1},
        ],
    }
    assert output["report"] == {
        "documents": [{"id": "d1", **summary}, {"id": "d2", **summary}],
        "document_count": 2,
    }
    assert output["headline"] == {"text": "2 documents analysed"}

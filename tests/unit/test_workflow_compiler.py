"""The compiler: both governance modes of a support-triage flow, checked by moto's ASL parser."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from aob.workflows import load_spec, parse_spec
from aob.workflows.compiler import compile_spec, compiled_path
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support_triage" / "workflow.yaml"
# A refund asked for on the support form: its category routes it, no model call.
REFUND_PATH = ["classify", "intake", "route_category", "lookup_order", "approve_refund", "refund"]

FULL = {
    "name": "full",
    "version": "1",
    "start": "prepare",
    "nodes": {
        "prepare": {"type": "transform", "parameters": {"ids.$": "$.input.ids"}, "next": "research"},
        "research": {
            "type": "agent",
            "tier": "medium",
            "system": "You look into orders; {braces} and 'quotes' stay as written.",
            "prompt": "Look into {} (it's \\ {urgent})",
            "prompt_args": ["$.input.question"],
            "tools": ["lookup_order", "web_search"],
            "max_steps": 4,
            "next": "fan",
        },
        "fan": {
            "type": "parallel",
            "next": "each",
            "branches": [
                {
                    "start": "summarize",
                    "nodes": {
                        "summarize": {"type": "model", "tier": "small", "prompt": "Sum up", "end": True}
                    },
                },
                {
                    "start": "kb",
                    "nodes": {
                        "kb": {"type": "tool", "tool": "search_kb", "constants": {"q": "x"}, "end": True}
                    },
                },
            ],
        },
        "each": {
            "type": "map",
            "items_path": "$.prepare.ids",
            "max_concurrency": 2,
            "next": "check",
            "iterator": {
                "start": "fetch",
                "nodes": {
                    "fetch": {
                        "type": "tool",
                        "tool": "lookup_order",
                        "args": {"order_id": "$.item"},
                        "end": True,
                    }
                },
            },
        },
        "check": {
            "type": "choice",
            "max_iterations": 3,
            "choices": [
                {
                    "variable": "$.research.answer.text",
                    "operator": "matches",
                    "value": "*retry*",
                    "next": "research",
                },
                {"variable": "$.research.answer.text", "operator": "is_absent", "next": "stop"},
            ],
            "default": "publish",
        },
        "publish": {
            "type": "tool",
            "tool": "notify",
            "args": {"text": "$.research.answer.text"},
            "policy": {"kind": "egress", "destination": "slack"},
            "end": True,
        },
        "stop": {"type": "fail", "error": "NoAnswer", "cause": "the agent gave no answer"},
    },
}


def with_dummy_arns(asl: dict[str, Any]) -> str:
    return re.sub(
        r"\$\{(\w+)\}",
        lambda found: f"arn:aws:lambda:us-east-1:123456789012:function:{found[1]}",
        json.dumps(asl),
    )


@pytest.fixture
def sfn(monkeypatch: pytest.MonkeyPatch) -> Any:
    # moto intercepts AWS hostnames only; `make` points AWS_ENDPOINT_URL at LocalStack.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        iam = boto3.client("iam", region_name="us-east-1")
        iam.create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")
        yield boto3.client("stepfunctions", region_name="us-east-1")


def lease_passed(asl: dict[str, Any]) -> dict[str, Any]:
    """The run with its lease states as Pass states (moto cannot run the lease function here)."""
    states = dict(asl["States"])
    for name in {"AcquireLease", "ReleaseLease", "ReleaseLeaseAfterFailure"} & states.keys():
        kept = {key: states[name][key] for key in ("ResultPath", "Next", "End") if key in states[name]}
        states[name] = {"Type": "Pass", "Result": {"value": {"fencing_token": 1}}, **kept}
    return {**asl, "States": states}


def create(sfn: Any, name: str, asl: dict[str, Any]) -> str:
    created = sfn.create_state_machine(
        name=name, definition=with_dummy_arns(asl), roleArn="arn:aws:iam::123456789012:role/sfn"
    )
    return created["stateMachineArn"]


def test_committed_example_asl_is_what_the_compiler_makes() -> None:
    spec = load_spec(EXAMPLE)
    for mode in ("explicit", "fused"):
        committed = json.loads(compiled_path(EXAMPLE, mode).read_text())
        assert committed == compile_spec(spec, mode).asl, (
            "regenerate: python -m aob.workflows.compiler examples/support_triage/workflow.yaml"
        )


@pytest.mark.parametrize("mode", ["explicit", "fused"])
def test_both_modes_pass_the_step_functions_parser(sfn: Any, mode: str) -> None:
    for name, spec in [("triage", load_spec(EXAMPLE)), ("full", parse_spec(FULL))]:
        assert create(sfn, f"{name}-{mode}", compile_spec(spec, mode).asl).endswith(f"{name}-{mode}")


def test_fused_has_fewer_states_transitions_and_lambda_calls() -> None:
    spec = load_spec(EXAMPLE)
    explicit, fused = compile_spec(spec, "explicit"), compile_spec(spec, "fused")

    def per_refund(stats: dict[str, Any], field: str) -> int:
        return sum(getattr(stats[node], field) for node in [*REFUND_PATH, "$run"])

    assert (len(explicit.asl["States"]), len(fused.asl["States"])) == (36, 14)
    assert (
        per_refund(explicit.stats, "transitions_per_pass"),
        per_refund(fused.stats, "transitions_per_pass"),
    ) == (
        23,
        8,
    )
    assert (
        per_refund(explicit.stats, "lambda_invocations"),
        per_refund(fused.stats, "lambda_invocations"),
    ) == (
        18,
        6,
    )


def test_explicit_mode_holds_the_lease_and_governs_each_call() -> None:
    compiled = compile_spec(load_spec(EXAMPLE), "explicit")
    states = compiled.asl["States"]
    assert compiled.asl["StartAt"] == "AcquireLease"
    assert states["AcquireLease"]["Next"] == "ClassifyCheckPolicy"
    assert states["ClassifyRecord"]["Next"] == "Intake"
    assert states["Intake"]["Default"] == "Route"
    assert states["RouteCategory"]["Choices"][0]["Next"] == "LookupOrderCheckPolicy"
    assert [
        states[f"LookupOrder{s}"]["Next"]
        for s in ("CheckPolicy", "ReserveTokens", "", "SettleTokens", "Record", "Denied", "RecordDenied")
    ] == [
        "LookupOrderIsAllowed",
        "LookupOrder",
        "LookupOrderSettleTokens",
        "LookupOrderRecord",
        "ApproveRefund",
        "LookupOrderRecordDenied",
        "RecordDenial",
    ]
    policy = states["LookupOrderCheckPolicy"]["Parameters"]["Payload"]["action"]
    assert policy == {"kind": "tool", "tool": "lookup_order", "args": {"order_id.$": "$.input.order_id"}}
    assert states["ClassifyReserveTokens"]["Parameters"]["Payload"]["estimate_tokens"] == 8
    assert states["RefundRecord"]["Next"] == "ReleaseLease"
    assert states["Done"] == {"Type": "Pass", "Next": "ReleaseLease"}
    assert states["ReleaseLease"]["End"] is True
    assert states["RecordFailure"]["Next"] == "ReleaseLeaseAfterFailure"
    assert compiled.substitutions == [
        "ApprovalFunctionArn",
        "MeteringFunctionArn",
        "ModelGatewayFunctionArn",
        "PolicyCheckFunctionArn",
        "SessionLeaseFunctionArn",
        "StepRecorderFunctionArn",
        "ToolGatewayFunctionArn",
    ]


def test_explicit_mode_records_each_governed_call_and_each_denial() -> None:
    states = compile_spec(load_spec(EXAMPLE), "explicit").asl["States"]
    record = states["LookupOrderRecord"]
    payload = record["Parameters"]["Payload"]
    assert record["Parameters"]["FunctionName"] == "${StepRecorderFunctionArn}"
    assert payload["step_id.$"] == states["LookupOrder"]["Parameters"]["Payload"]["step_id.$"]
    assert payload["node"] == {"name": "lookup_order", "kind": "tool"}
    assert payload["outcome"] == "succeeded"
    assert payload["call"] == {"tool": "lookup_order", "args": {"order_id.$": "$.input.order_id"}}
    assert payload["result.$"] == "$.lookup_order.value"
    assert payload["policy.$"] == "$.governance.LookupOrder.policy.value"
    assert payload["fencing_token.$"] == "$.governance.lease.value.fencing_token"
    assert record["ResultPath"] == "$.governance.LookupOrder.record"
    assert record["Catch"][0]["Next"] == "RecordFailure"
    denied = states["ClassifyRecordDenied"]["Parameters"]["Payload"]
    assert (denied["outcome"], denied["node"]) == ("denied", {"name": "classify", "kind": "model"})
    assert denied["call"]["messages"][1] == {
        "role": "user",
        "content.$": "States.Format('{}', $.input.message)",
    }


def test_fused_mode_holds_the_lease_and_tells_each_gateway_where_to_record() -> None:
    states = compile_spec(load_spec(EXAMPLE), "fused").asl["States"]
    assert states["AcquireLease"]["Next"] == "Classify"
    assert states["Classify"]["Next"] == "Intake"
    assert states["Refund"]["Next"] == "ReleaseLease"
    assert states["RecordFailure"]["Next"] == "ReleaseLeaseAfterFailure"
    for name, node in [("Classify", "classify"), ("LookupOrder", "lookup_order"), ("Refund", "refund")]:
        assert states[name]["Parameters"]["Payload"]["record"] == {
            "node": node,
            "session_id.$": "$.session_id",
            "fencing_token.$": "$.governance.lease.value.fencing_token",
        }


@pytest.mark.parametrize("mode", ["explicit", "fused"])
def test_map_and_agent_iterations_get_the_session_and_the_lease(mode: str) -> None:
    states = compile_spec(parse_spec(FULL), mode).asl["States"]
    for selector in (states["Each"]["ItemSelector"], states["ResearchCallTools"]["ItemSelector"]):
        assert selector["session_id.$"] == "$.session_id"
        assert selector["governance"] == {"lease.$": "$.governance.lease"}
    tool_states = states["ResearchCallTools"]["ItemProcessor"]["States"]
    if mode == "explicit":
        assert tool_states["ResearchCallToolRecord"]["Parameters"]["Payload"]["node"] == {
            "name": "research",
            "kind": "tool",
        }
    else:
        assert tool_states["ResearchCallTool"]["Parameters"]["Payload"]["record"]["node"] == "research"


def test_fused_mode_is_one_gateway_task_per_call_with_retry_and_catch() -> None:
    compiled = compile_spec(load_spec(EXAMPLE), "fused")
    states = compiled.asl["States"]
    assert list(states) == [
        "AcquireLease",
        "Intake",
        "RouteCategory",
        "Classify",
        "Route",
        "LookupOrder",
        "ApproveRefund",
        "ApproveRefundTimedOut",
        "Refund",
        "Done",
        "RecordFailure",
        "ReleaseLeaseAfterFailure",
        "Failed",
        "ReleaseLease",
    ]
    lookup = states["LookupOrder"]
    assert lookup["Parameters"]["FunctionName"] == "${ToolGatewayFunctionArn}"
    assert lookup["Parameters"]["Payload"]["args"] == {"order_id.$": "$.input.order_id"}
    assert lookup["Retry"][0]["ErrorEquals"] == [
        "ToolUnavailable",
        "ToolCallInProgress",
        "ServiceUnavailable",
    ]
    assert states["Classify"]["Retry"][0]["ErrorEquals"] == ["ModelUnavailable", "ServiceUnavailable"]
    assert lookup["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"}
    ]
    # The form's category routes when present (checked first: a missing path fails a Choice rule).
    assert states["Intake"] == {
        "Type": "Choice",
        "Choices": [{"Variable": "$.input.category", "IsPresent": True, "Next": "RouteCategory"}],
        "Default": "Route",
    }
    assert states["RouteCategory"]["Choices"] == [
        {"Variable": "$.input.category", "StringEquals": "refund", "Next": "LookupOrder"}
    ]
    assert states["Route"]["Choices"] == [
        {"Variable": "$.classify.text", "StringEquals": "refund", "Next": "LookupOrder"}
    ]
    assert states["Refund"]["Next"] == "ReleaseLease"
    assert compiled.substitutions == [
        "ApprovalFunctionArn",
        "ModelGatewayFunctionArn",
        "SessionLeaseFunctionArn",
        "ToolGatewayFunctionArn",
    ]


def test_approval_waits_for_a_task_token_and_timeout_rejects() -> None:
    states = compile_spec(load_spec(EXAMPLE), "fused").asl["States"]
    approval = states["ApproveRefund"]
    assert approval["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert approval["Parameters"]["FunctionName"] == "${ApprovalFunctionArn}"
    assert approval["Parameters"]["Payload"]["task_token.$"] == "$$.Task.Token"
    assert approval["TimeoutSeconds"] == 86400
    # No decision in time is a rejection, not a States.Timeout failure (LocalStack would end the
    # run as States.Runtime): TimedOut says so at $.error, then the reject path as for a person's.
    assert approval["Catch"] == [
        {"ErrorEquals": ["States.Timeout"], "ResultPath": "$.error", "Next": "ApproveRefundTimedOut"},
        {"ErrorEquals": ["ApprovalRejected"], "ResultPath": "$.error", "Next": "RecordFailure"},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "RecordFailure"},
    ]
    assert states["ApproveRefundTimedOut"] == {
        "Type": "Pass",
        "Parameters": {"Error": "ApprovalRejected", "Cause": "no decision within 86400 s"},
        "ResultPath": "$.error",
        "Next": "RecordFailure",
    }
    assert approval["Next"] == "Refund"


@pytest.mark.parametrize("mode", ["explicit", "fused"])
def test_an_approval_timeout_takes_the_on_reject_edge_like_a_rejection(mode: str) -> None:
    ask = {
        "type": "approval",
        "approver_role": "approver",
        "timeout_s": 2,
        "next": "done",
        "on_reject": "sorry",
    }
    sorry = {"type": "transform", "parameters": {"text": "not approved"}, "end": True}
    spec = {"name": "w", "version": "1", "start": "ask", "nodes": {"ask": ask, "sorry": sorry}}
    spec["nodes"]["done"] = {"type": "succeed"}
    states = compile_spec(parse_spec(spec), mode).asl["States"]

    timed_out = states["AskTimedOut"]
    assert timed_out["Parameters"] == {"Error": "ApprovalRejected", "Cause": "no decision within 2 s"}
    assert timed_out["Next"] == "Sorry" == states["Ask"]["Catch"][1]["Next"]
    assert states["Ask"]["TimeoutSeconds"] == 2


def test_agent_loops_until_it_answers_or_max_steps() -> None:
    states = compile_spec(parse_spec(FULL), "fused").asl["States"]
    assert states["ResearchWantsTools"]["Default"] == "ResearchAnswer"
    assert states["ResearchCallTools"]["ItemsPath"] == "$.research.reply.message.tool_calls"
    assert states["ResearchRecordStep"]["Next"] == "ResearchJoinMessages"  # JSONPath: LocalStack runs it
    assert states["ResearchAppendMessages"]["Next"] == "ResearchUnderLimit"
    assert states["ResearchUnderLimit"]["Choices"] == [
        {"Variable": "$.research.steps", "NumericLessThan": 4, "Next": "ResearchCallModel"}
    ]
    assert states["ResearchUnderLimit"]["Default"] == "ResearchAnswer"
    tools = states["ResearchCallModel"]["Parameters"]["Payload"]["tools"]
    assert [tool["function"]["name"] for tool in tools] == ["lookup_order", "web_search"]


def test_edge_policy_is_checked_before_the_edge_is_taken() -> None:
    states = compile_spec(parse_spec(FULL), "fused").asl["States"]
    assert states["Publish"]["Next"] == "PublishCheckEdgePolicy"
    assert states["PublishCheckEdgePolicy"]["Parameters"]["Payload"]["action"] == {
        "kind": "egress",
        "destination": "slack",
        "data_classes": [],
    }
    assert states["PublishEdgeAllowed"]["Choices"][0]["Next"] == "ReleaseLease"
    assert states["PublishEdgeDenied"]["Next"] == "RecordDenial"


def test_bounded_loop_fails_the_run_past_max_iterations(sfn: Any) -> None:
    spec = parse_spec(
        {
            "name": "spin",
            "version": "1",
            "start": "tick",
            "nodes": {
                "tick": {
                    "type": "transform",
                    "parameters": {"at.$": "$$.State.EnteredTime"},
                    "next": "again",
                },
                "again": {
                    "type": "choice",
                    "max_iterations": 2,
                    "choices": [{"variable": "$.tick.at", "operator": "is_present", "next": "tick"}],
                    "default": "tick",
                },
            },
        }
    )
    arn = create(sfn, "spin", lease_passed(compile_spec(spec, "fused").asl))
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    for _ in range(100):
        described = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert (described["status"], described.get("error")) == ("FAILED", "LoopBoundExceeded")

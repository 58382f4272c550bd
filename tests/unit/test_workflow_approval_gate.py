"""A tool node's `approval`: it must name an approval node every path to the tool passes, and the
compiled call carries that approval's id to the tool gateway."""

from __future__ import annotations

from typing import Any

import pytest
from aob.errors import SpecInvalid
from aob.workflows import parse_spec
from aob.workflows.compiler import compile_spec


def spec(nodes: dict[str, Any], start: str = "ask") -> dict[str, Any]:
    return {"name": "w", "version": "1", "start": start, "nodes": nodes}


ASK = {"type": "approval", "approver_role": "approver", "timeout_s": 60, "next": "pay"}
PAY = {
    "type": "tool",
    "tool": "issue_refund",
    "approval": "ask",
    "args": {"amount": "$.input.amount"},
    "end": True,
}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecInvalid) as caught:
        parse_spec(data)
    return caught.value.problems


def test_a_tool_behind_its_approval_is_valid() -> None:
    assert parse_spec(spec({"ask": ASK, "pay": PAY})).nodes["pay"].approval == "ask"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("nodes", "start", "expected"),
    [
        (
            {"ask": ASK | {"next": "pay"}, "pay": PAY | {"approval": "nobody"}},
            "ask",
            "nodes.pay.approval: 'nobody' is no node of this scope; name an approval node (type: approval)",
        ),
        (
            {
                "look": {"type": "tool", "tool": "lookup_order", "next": "pay"},
                "pay": PAY | {"approval": "look"},
            },
            "look",
            "nodes.pay.approval: 'look' is a tool node; name an approval node (type: approval)",
        ),
        (
            {
                "route": {
                    "type": "choice",
                    "choices": [{"variable": "$.vip", "operator": "equals", "value": True, "next": "pay"}],
                    "default": "ask",
                },
                "ask": ASK,
                "pay": PAY,
            },
            "route",
            "nodes.pay.approval: pay can be reached without ask approving",
        ),
        (
            {"ask": ASK | {"next": "done", "on_reject": "pay"}, "pay": PAY, "done": {"type": "succeed"}},
            "ask",
            "nodes.pay.approval: pay can be reached without ask approving",
        ),
    ],
    ids=["unknown-node", "not-an-approval", "path-around-it", "rejection-path"],
)
def test_an_approval_that_does_not_guard_the_tool_is_refused(
    nodes: dict[str, Any], start: str, expected: str
) -> None:
    assert any(problem.startswith(expected) for problem in problems(spec(nodes, start))), problems(
        spec(nodes, start)
    )


@pytest.mark.parametrize("mode", ["explicit", "fused"])
def test_the_compiled_call_carries_the_approval_id(mode: str) -> None:
    compiled = compile_spec(parse_spec(spec({"ask": ASK, "pay": PAY})), mode)  # type: ignore[arg-type]

    payloads = [
        state["Parameters"]["Payload"]
        for state in compiled.asl["States"].values()
        if state.get("Parameters", {}).get("FunctionName") == "${ToolGatewayFunctionArn}"
    ]
    assert [payload.get("approval_id.$") for payload in payloads] == ["$.ask.approval_id"]


def test_a_tool_without_approval_sends_none() -> None:
    compiled = compile_spec(parse_spec(spec({"pay": PAY | {"approval": None}}, start="pay")), "fused")

    assert "approval_id.$" not in compiled.asl["States"]["Pay"]["Parameters"]["Payload"]

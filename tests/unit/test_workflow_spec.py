"""Workflow specs: the committed JSON Schema, and every malformed spec refused naming node and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aob.errors import InvalidInput, SpecInvalid
from aob.workflows import SCHEMA_PATH, json_schema, load_spec, parse_spec
from aob.workflows.compiler import compile_spec

ROOT = Path(__file__).resolve().parents[2]


def spec(nodes: dict[str, Any], start: str = "a") -> dict[str, Any]:
    return {"name": "w", "version": "1", "start": start, "nodes": nodes}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecInvalid) as caught:
        parse_spec(data)
    return caught.value.problems


def tool(**fields: Any) -> dict[str, Any]:
    return {"type": "tool", "tool": "lookup_order", **fields}


def test_committed_schema_is_the_generated_one() -> None:
    committed = json.loads(SCHEMA_PATH.read_text())
    assert committed == json_schema(), (
        'regenerate: python -c "from aob.workflows import write_json_schema; write_json_schema()"'
    )


def test_example_spec_loads_from_yaml() -> None:
    loaded = load_spec(ROOT / "examples" / "support_triage" / "workflow.yaml")
    assert loaded.start == "classify"
    assert set(loaded.nodes) == {
        "intake",
        "route_category",
        "classify",
        "route",
        "lookup_order",
        "approve_refund",
        "refund",
        "done",
    }


def test_json_spec_loads(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps(spec({"a": tool(end=True)})))
    assert load_spec(path).nodes["a"].type == "tool"


def test_spec_invalid_is_an_invalid_input_listing_every_problem() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_spec(spec({"a": tool(next="b"), "c": {"type": "succeed"}}))
    assert "nodes.a.next: names no node 'b'" in str(caught.value)
    assert "nodes.c: unreachable from 'a'" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (spec({"a": {"type": "teleport", "end": True}}), "nodes.a.type: unknown node type 'teleport'"),
        (spec({"a": {"end": True}}), "nodes.a.type: missing"),
        (spec({"a": {"type": "tool", "end": True}}), "nodes.a.tool: Field required"),
        (
            spec({"a": {"type": "agent", "tier": "small", "prompt": "p", "tools": ["t"], "end": True}}),
            "nodes.a.max_steps: Field required",
        ),
        (spec({"a": tool(end=True, retries=3)}), "nodes.a.retries: Extra inputs are not permitted"),
        (spec({"a": tool(next="b")}), "nodes.a.next: names no node 'b'"),
        (spec({"a": tool()}), "nodes.a.next: missing (name the next node, or set end: true)"),
        (
            spec({"a": tool(next="b", end=True), "b": {"type": "succeed"}}),
            "nodes.a.end: set either next or end",
        ),
        (spec({"a": {"type": "succeed"}}, start="zz"), "start: names no node 'zz'"),
        (spec({"a": {"type": "succeed"}, "b": {"type": "succeed"}}), "nodes.b: unreachable from 'a'"),
        (
            spec(
                {
                    "a": {
                        "type": "model",
                        "tier": "small",
                        "prompt": "{} and {}",
                        "prompt_args": ["$.x"],
                        "end": True,
                    }
                }
            ),
            "nodes.a.prompt_args: the prompt has 2 {} placeholder(s), but there are 1 prompt_args",
        ),
        (
            spec(
                {"a": {"type": "choice", "choices": [{"variable": "$.x", "operator": "equals", "next": "b"}]}}
            ),
            "nodes.a.default: Field required",
        ),
        (
            spec(
                {
                    "a": {
                        "type": "choice",
                        "choices": [{"variable": "$.x", "operator": "is_present", "value": 1, "next": "b"}],
                        "default": "b",
                    },
                    "b": {"type": "succeed"},
                }
            ),
            "nodes.a.choices.0.value: is_present takes no value",
        ),
        (
            spec({"a": {"type": "transform", "parameters": {"x.$": 3}, "end": True}}),
            "nodes.a.parameters.x.$: a key ending in .$ takes a JSONPath or States.* call",
        ),
        (
            spec(
                {
                    "a": {
                        "type": "parallel",
                        "end": True,
                        "branches": [{"start": "x", "nodes": {"x": tool(next="a")}}],
                    }
                }
            ),
            "nodes.a.branches.0.nodes.x.next: names no node 'a' (edges stay in their branch)",
        ),
        (
            spec(
                {
                    "a": {
                        "type": "map",
                        "items_path": "$.ids",
                        "end": True,
                        "iterator": {"start": "x", "nodes": {}},
                    }
                }
            ),
            "nodes.a.iterator.nodes: Dictionary should have at least 1 item",
        ),
        (
            spec(
                {
                    "a": {
                        "type": "parallel",
                        "next": "b",
                        "branches": [{"start": "b", "nodes": {"b": tool(end=True)}}],
                    },
                    "b": {"type": "succeed"},
                }
            ),
            "nodes.b: the name is already used at nodes.a.branches.0.nodes.b",
        ),
    ],
)
def test_malformed_spec_names_node_and_field(data: dict[str, Any], expected: str) -> None:
    assert any(problem.startswith(expected) for problem in problems(data)), problems(data)


def loop(choice: dict[str, Any]) -> dict[str, Any]:
    rule = {"variable": "$.lookup.result.status", "operator": "equals", "value": "pending", "next": "lookup"}
    return spec(
        {
            "lookup": tool(next="again"),
            "again": {"type": "choice", "choices": [rule], "default": "done", **choice},
            "done": {"type": "succeed"},
        },
        start="lookup",
    )


def test_cycle_without_a_bound_is_refused() -> None:
    assert problems(loop({})) == [
        "nodes.again.choices.0.next: the cycle lookup -> again -> lookup has no bound "
        "(give a choice on it max_iterations)"
    ]


def test_cycle_through_a_bounded_choice_is_accepted() -> None:
    assert parse_spec(loop({"max_iterations": 5})).nodes["again"].max_iterations == 5


def test_node_whose_state_name_clashes_is_refused_before_any_asl() -> None:
    clash = parse_spec(spec({"a": tool(next="failed"), "failed": {"type": "succeed"}}))
    with pytest.raises(SpecInvalid) as caught:
        compile_spec(clash, "fused")
    assert caught.value.problems == [
        "nodes.failed: its state 'Failed' clashes with the workflow's own state; rename the node"
    ]

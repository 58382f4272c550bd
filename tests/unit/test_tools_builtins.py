"""The python built-ins lookup_order and calculator as the gateway sees them: validate, run, schemas."""

from __future__ import annotations

import pytest
from aob.errors import InvalidToolArguments, ToolFailed
from aob.tools import ToolRegistry
from aob.tools.builtins import BUILTINS

REGISTRY = ToolRegistry(BUILTINS)
KEY = "tool:" + "0" * 64


def run(tool: str, **args: object) -> object:
    built_in = REGISTRY.get(tool)
    return built_in.execute(built_in.validate(args), KEY)


def test_lookup_order_returns_the_order_with_its_total() -> None:
    result = run("lookup_order", order_id="o-1002")

    assert result == {
        "order_id": "o-1002",
        "found": True,
        "order": {
            "order_id": "o-1002",
            "status": "shipped",
            "customer_email": "grace@example.com",
            "placed_at": "2025-03-09",
            "currency": "USD",
            "lines": [
                {"sku": "mouse-02", "quantity": 2, "unit_price": 24.5},
                {"sku": "pad-07", "quantity": 1, "unit_price": 9.99},
            ],
        },
        "total": 58.99,
    }


def test_lookup_order_of_an_unknown_order_says_not_found() -> None:
    assert run("lookup_order", order_id="o-9999") == {
        "order_id": "o-9999",
        "found": False,
        "order": None,
        "total": None,
    }


@pytest.mark.parametrize(
    ("args", "field"),
    [({}, "order_id: Field required"), ({"order_id": "1001"}, "order_id: String should match pattern")],
)
def test_lookup_order_refuses_bad_arguments_naming_the_field(args: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidToolArguments, match=f"invalid arguments for tool lookup_order: {field}"):
        REGISTRY.get("lookup_order").validate(args)


def test_calculator_evaluates_arithmetic() -> None:
    assert run("calculator", expression="(129 - 24.5) * 2 + 2 ** 3 % 5") == {
        "expression": "(129 - 24.5) * 2 + 2 ** 3 % 5",
        "value": 212.0,
    }


@pytest.mark.parametrize(
    "expression", ["__import__('os').system('id')", "x + 1", "1 +", "True + 1", "[1, 2]"]
)
def test_calculator_refuses_anything_but_arithmetic_before_running(expression: str) -> None:
    with pytest.raises(
        InvalidToolArguments, match="expression: Value error, (only numbers|not an arithmetic)"
    ):
        REGISTRY.get("calculator").validate({"expression": expression})


@pytest.mark.parametrize(
    ("expression", "error_type"),
    [("1 / 0", "ZeroDivisionError"), ("10 ** 400", "OverflowError"), ("(-8) ** 0.5", "ValueError")],
)
def test_calculator_failures_are_tool_failures(expression: str, error_type: str) -> None:
    with pytest.raises(ToolFailed) as failed:
        run("calculator", expression=expression)

    assert failed.value.error_type == error_type


def test_builtins_publish_argument_and_result_schemas() -> None:
    lookup = REGISTRY.get("lookup_order")

    assert [tool.name for tool in REGISTRY.tools()] == ["calculator", "lookup_order"]
    assert {tool.kind for tool in REGISTRY.tools()} == {"python"}
    assert lookup.description.startswith("Look up an order by id")
    assert lookup.args_schema["required"] == ["order_id"]
    assert lookup.args_schema["additionalProperties"] is False
    assert set(lookup.result_schema["properties"]) == {"order_id", "found", "order", "total"}

"""The tool registry: built-ins plus a tools file of http and lambda tools, with generated schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from aob.errors import ConfigurationError, InvalidToolArguments, UnknownTool
from aob.tools import HttpTool, LambdaTool, ToolRegistry

REFUND = {
    "name": "issue_refund",
    "kind": "http",
    "description": "Refund an order",
    "method": "POST",
    "url": "https://payments.internal/orders/{order_id}/refunds",
    "allowed_hosts": ["payments.internal"],
    "timeout_s": 5,
    "max_response_bytes": 65536,
    "args": {
        "order_id": {"type": "string", "pattern": "^o-[0-9]+$"},
        "amount": {"type": "number", "ge": 0.01, "description": "in the order's currency"},
        "reason": {"type": "string", "required": False, "max_length": 200},
        "notify": {"type": "boolean", "default": True},
    },
    "result": {"refund_id": {"type": "string"}},
}
EMAIL = {
    "name": "send_email",
    "kind": "lambda",
    "description": "Send an email",
    "function": "aob-send-email",
    "args": {"to": {"type": "string"}, "tags": {"type": "array", "required": False}},
}


def no_client() -> httpx.Client:
    raise AssertionError("loading tools must not make HTTP calls")


def registry(tmp_path: Path, *tools: dict[str, Any]) -> ToolRegistry:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps({"tools": list(tools)}))
    return ToolRegistry.load(path, no_client)


def test_the_tools_file_adds_http_and_lambda_tools_to_the_builtins(tmp_path: Path) -> None:
    tools = registry(tmp_path, REFUND, EMAIL)
    refund, email = tools.get("issue_refund"), tools.get("send_email")

    assert tools.names == [
        "calculator",
        "extract_keywords",
        "generate_report",
        "issue_refund",  # the file's http tool, in place of the simulated built-in
        "lookup_order",
        "report_stats",
        "send_email",
        "text_stats",
    ]
    assert isinstance(refund, HttpTool) and (refund.kind, refund.method, refund.timeout_s) == (
        "http",
        "POST",
        5,
    )
    assert refund.allowed_hosts == {"payments.internal"} and refund.max_response_bytes == 65536
    assert isinstance(email, LambdaTool) and (email.kind, email.function) == ("lambda", "aob-send-email")


def test_field_specs_become_models_with_defaults_and_json_schemas(tmp_path: Path) -> None:
    refund = registry(tmp_path, REFUND).get("issue_refund")

    assert refund.validate({"order_id": "o-1", "amount": 5, "reason": None}) == {
        "order_id": "o-1",
        "amount": 5.0,
        "notify": True,  # defaults filled in, nulls left out: the canonical arguments
    }
    schema = refund.args_schema
    assert schema["required"] == ["order_id", "amount"] and schema["additionalProperties"] is False
    assert schema["properties"]["amount"] == {
        "description": "in the order's currency",
        "minimum": 0.01,
        "title": "Amount",
        "type": "number",
    }
    assert refund.result_schema["required"] == ["refund_id"]
    any_json = registry(tmp_path, EMAIL).get("send_email").result_schema  # no result fields: any JSON
    assert any_json["$ref"] == "#/$defs/JsonValue" and any_json["$defs"]["JsonValue"] == {}


def test_arguments_off_the_schema_are_refused_naming_each_field(tmp_path: Path) -> None:
    refund = registry(tmp_path, REFUND).get("issue_refund")

    with pytest.raises(InvalidToolArguments) as refused:
        refund.validate({"order_id": "1", "amount": 0, "coupon": "x"})

    message = str(refused.value)
    assert message.startswith("invalid arguments for tool issue_refund: ")
    assert "order_id: String should match pattern" in message
    assert "amount: Input should be greater than or equal to 0.01" in message
    assert "coupon: Extra inputs are not permitted" in message


def test_an_unknown_tool_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(
        UnknownTool, match="no tool 'refund'; known tools: calculator, extract_keywords, generate_report"
    ):
        registry(tmp_path, REFUND).get("refund")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            {"url": "https://payments.internal/{order}/refunds"},
            "url placeholders ['order'] are not arguments",
        ),
        (
            {"args": {"order_id": {"type": "string", "required": False}}},
            "url placeholders ['order_id'] must be required arguments or have a default",
        ),
        ({"allowed_hosts": []}, "allowed_hosts: List should have at least 1 item"),
        ({"url": "ftp://payments.internal/x"}, "url: String should match pattern"),
        ({"args": {"amount": {"type": "number", "pattern": "x"}}}, "pattern and max_length apply to strings"),
        (
            {"args": {"order_id": {"type": "string", "pattern": "^(?=o)"}}},
            "pattern '^(?=o)' is not supported: error: look-around",
        ),
        ({"args": {"card.number": {"type": "string"}}}, "args.card.number.[key]: String should match"),
        ({"name": "Issue Refund"}, "name: String should match pattern"),
        ({"timeout": 5}, "timeout: Extra inputs are not permitted"),
    ],
)
def test_a_bad_tools_file_is_a_configuration_error_naming_the_field(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigurationError, match="invalid tools file .*tools.json: ") as refused:
        registry(tmp_path, REFUND | change)

    assert problem in str(refused.value)


def test_a_tool_defined_twice_or_shadowing_a_builtin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="tool issue_refund is defined twice"):
        registry(tmp_path, REFUND, REFUND)
    with pytest.raises(ConfigurationError, match="tool calculator is defined twice"):
        registry(tmp_path, EMAIL | {"name": "calculator"})


def test_a_missing_tools_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read the tools file .*absent.json"):
        ToolRegistry.load(tmp_path / "absent.json", no_client)

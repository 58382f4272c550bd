"""The python built-ins as the gateway sees them: validate, run, schemas."""

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

    assert [tool.name for tool in REGISTRY.tools()] == [
        "calculator",
        "extract_keywords",
        "generate_report",
        "issue_refund",
        "lookup_order",
        "report_stats",
        "text_stats",
    ]
    assert {tool.kind for tool in REGISTRY.tools()} == {"python"}
    assert lookup.description.startswith("Look up an order by id")
    assert lookup.args_schema["required"] == ["order_id"]
    assert lookup.args_schema["additionalProperties"] is False
    assert set(lookup.result_schema["properties"]) == {"order_id", "found", "order", "total"}


def test_issue_refund_returns_the_same_refund_id_for_the_same_order_and_amount() -> None:
    first = run("issue_refund", order_id="o-1002", amount=20)

    assert first == {
        "refund_id": first["refund_id"],  # type: ignore[index]
        "order_id": "o-1002",
        "amount": 20.0,
        "currency": "USD",
    }
    assert str(first["refund_id"]).startswith("rf-")  # type: ignore[index]
    assert run("issue_refund", order_id="o-1002", amount=20.0) == first
    assert run("issue_refund", order_id="o-1002", amount=21)["refund_id"] != first["refund_id"]  # type: ignore[index]
    assert run("issue_refund", order_id="o-1001", amount=20)["refund_id"] != first["refund_id"]  # type: ignore[index]


def test_issue_refund_may_refund_the_whole_order_but_no_more() -> None:
    assert run("issue_refund", order_id="o-1002", amount=58.99)["amount"] == 58.99  # type: ignore[index]

    with pytest.raises(ToolFailed, match=r"amount: 59.00 is above the order total 58.99 USD") as failed:
        run("issue_refund", order_id="o-1002", amount=59)
    assert failed.value.error_type == "AmountAboveTotal"


def test_issue_refund_of_an_unknown_order_fails_naming_the_order() -> None:
    with pytest.raises(ToolFailed, match="issue_refund: order_id: no order 'o-9999'") as failed:
        run("issue_refund", order_id="o-9999", amount=5)
    assert failed.value.error_type == "UnknownOrder"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"order_id": "o-1001"}, "amount: Field required"),
        ({"order_id": "o-1001", "amount": 0}, "amount: Input should be greater than 0"),
        ({"order_id": "o-1001", "amount": 1.005}, "amount: Value error, at most 2 decimals"),
        ({"order_id": "1001", "amount": 5}, "order_id: String should match pattern"),
    ],
)
def test_issue_refund_refuses_bad_arguments_naming_the_field(args: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidToolArguments, match=f"invalid arguments for tool issue_refund: {field}"):
        REGISTRY.get("issue_refund").validate(args)


def test_text_stats_counts_words_sentences_and_reading_time() -> None:
    text = "Step Functions route. Lambdas act! Is it governed? Yes, it's governed and re-checked"

    assert run("text_stats", text=text) == {
        "words": 13,  # it's and re-checked are one word each
        "sentences": 4,  # the last one ends without punctuation
        "characters": len(text),
        "reading_time_s": 4,  # 13 words at 200 a minute: 3.9 s, rounded up
    }
    assert run("text_stats", text=text, words_per_minute=60)["reading_time_s"] == 13  # type: ignore[index]
    assert run("text_stats", text="v1.2 is out... really")["sentences"] == 2  # type: ignore[index]


def test_extract_keywords_ranks_by_frequency_without_stopwords() -> None:
    text = "The policy gates the gateway. The gateway meters; the policy records. Policy, policy: 2025 ok"

    assert run("extract_keywords", text=text, top_n=3) == {
        "keywords": [
            {"word": "policy", "count": 4},  # case folded
            {"word": "gateway", "count": 2},
            {"word": "gates", "count": 1},  # ties alphabetical; the, 2025 and ok left out
        ]
    }
    assert run("extract_keywords", text="the and of it") == {"keywords": []}


@pytest.mark.parametrize(
    ("tool", "args", "field"),
    [
        ("text_stats", {"text": ""}, "text: String should have at least 1 character"),
        ("text_stats", {"text": "x" * 100_001}, "text: String should have at most 100000 characters"),
        ("text_stats", {"text": "x", "words_per_minute": 0}, "words_per_minute: Input should be greater"),
        ("extract_keywords", {"text": "x", "top_n": 0}, "top_n: Input should be greater than or equal to 1"),
        ("extract_keywords", {"text": 5}, "text: Input should be a valid string"),
    ],
)
def test_document_tools_refuse_bad_arguments_naming_the_field(
    tool: str, args: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidToolArguments, match=f"invalid arguments for tool {tool}: {field}"):
        REGISTRY.get(tool).validate(args)

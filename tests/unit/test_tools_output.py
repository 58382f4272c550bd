"""Redaction at the policy's paths, and the result's size cap."""

from __future__ import annotations

import json

import pytest
from aob.errors import PolicyEvaluationFailed
from aob.tools import REDACTED, Redaction, truncate

RESULT = {
    "refund_id": "r-1",
    "customer": {"email": "ada@example.com", "name": "Ada"},
    "cards": [{"number": "4111111111111111", "brand": "visa"}, {"number": "5500000000000004", "brand": "mc"}],
    "odd key": ["a", "b"],
}


def test_argument_paths_redact_arguments_and_say_which_matched() -> None:
    redaction = Redaction.from_obligation(["$.args.card_number", "$.args.iban", "$.result.customer.email"])
    args = {"order_id": "o-1", "card_number": "4111111111111111"}

    redacted, matched = redaction.apply("args", args)

    assert redacted == {"order_id": "o-1", "card_number": REDACTED}
    assert matched == ["$.args.card_number"]
    assert args["card_number"] == "4111111111111111"  # a copy: the caller's arguments are untouched


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.result.customer.email", {**RESULT, "customer": {"email": REDACTED, "name": "Ada"}}),
        ("$.result.customer.*", {**RESULT, "customer": {"email": REDACTED, "name": REDACTED}}),
        (
            "$.result.cards[*].number",
            {**RESULT, "cards": [{"number": REDACTED, "brand": "visa"}, {"number": REDACTED, "brand": "mc"}]},
        ),
        ("$.result.cards[1]", {**RESULT, "cards": [RESULT["cards"][0], REDACTED]}),
        ("$.result['odd key'][0]", {**RESULT, "odd key": [REDACTED, "b"]}),
    ],
)
def test_result_paths_redact_the_result(path: str, expected: object) -> None:
    redacted, matched = Redaction.from_obligation([path]).apply("result", RESULT)

    assert (redacted, matched) == (expected, [path])


@pytest.mark.parametrize(
    "path", ["$.result.missing", "$.result.cards[7]", "$.result.refund_id.x", "$.other.x"]
)
def test_a_path_that_matches_nothing_changes_nothing(path: str) -> None:
    assert Redaction.from_obligation([path]).apply("result", RESULT) == (RESULT, [])


def test_the_whole_arguments_path_redacts_every_value_but_keeps_the_names() -> None:
    assert Redaction.from_obligation(["$.args"]).apply("args", {"a": 1, "b": {"c": 2}}) == (
        {"a": REDACTED, "b": REDACTED},
        ["$.args"],
    )


@pytest.mark.parametrize(
    ("obligation", "problem"),
    [
        (["args.card_number"], "does not start with \\$"),
        (["$.args..x"], "does not parse at character 6"),
        (["$.args[x]"], "does not parse"),
        ("$.args.card_number", "must be a list of paths"),
        (["$.args.a", 3], "must be a list of paths"),
    ],
)
def test_a_malformed_obligation_stops_the_call(obligation: object, problem: str) -> None:
    with pytest.raises(PolicyEvaluationFailed, match=problem):
        Redaction.from_obligation(obligation)  # type: ignore[arg-type]


def test_a_result_within_the_cap_is_kept_whole() -> None:
    assert truncate(RESULT, 10_000) == (RESULT, False)


def test_a_result_past_the_cap_becomes_the_start_of_its_json_text() -> None:
    value = {"text": "é" * 100}  # 2 bytes a character

    cut, truncated = truncate(value, 51)

    assert truncated is True
    assert cut == '{"text":"' + "é" * 21  # 9 + 42 bytes; the 52nd would split a character
    assert json.dumps(value, ensure_ascii=False, separators=(",", ":")).startswith(cut)

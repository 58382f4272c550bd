"""The Rego test runner: one outcome per `test_*` rule, like `opa test`."""

from __future__ import annotations

from pathlib import Path

from aob.policy.testing import run_policy_tests

POLICY = """package shop

tax(amount) := amount * data.shop.rate

greeting := sprintf("hello %s", [input.name])
"""
TESTS = """package shop_test

test_tax if {
	data.shop.tax(100) == 20
}

test_greeting if {
	data.shop.greeting == "hello ada" with input.name as "ada"
}

test_wrong if {
	data.shop.tax(100) == 21
}

test_undefined if {
	data.shop.nothing_here
}

# test_commented_out if { false }
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_each_test_rule_passes_or_fails(tmp_path: Path) -> None:
    report = run_policy_tests(
        write(
            tmp_path, {"shop.rego": POLICY, "shop_test.rego": TESTS, "data.json": '{"shop": {"rate": 0.2}}'}
        )
    )

    assert [(r.rule, r.outcome, r.message) for r in report.results] == [
        ("data.shop_test.test_tax", "pass", ""),
        ("data.shop_test.test_greeting", "pass", ""),
        ("data.shop_test.test_wrong", "fail", "undefined"),
        ("data.shop_test.test_undefined", "fail", "undefined"),
    ]
    assert (report.count("pass"), report.count("fail"), report.ok) == (2, 2, False)


def test_policies_that_do_not_compile_are_one_error_naming_the_file(tmp_path: Path) -> None:
    report = run_policy_tests(
        write(tmp_path, {"shop.rego": "package shop\nx := {\n", "shop_test.rego": TESTS})
    )

    [result] = report.results
    assert result.outcome == "error"
    assert "shop.rego:2:" in result.message


def test_overriding_the_whole_input_is_an_error_not_a_crash(tmp_path: Path) -> None:
    report = run_policy_tests(
        write(tmp_path, {"t.rego": 'package t\n\ntest_x if {\n\ttrue with input as {"a": 1}\n}\n'})
    )

    assert report.results[0].outcome == "error"
    assert "override input fields instead" in report.results[0].message


def test_no_tests_is_not_a_pass(tmp_path: Path) -> None:
    report = run_policy_tests(write(tmp_path, {"shop.rego": POLICY}))

    assert report.results == [] and report.ok is False

"""The Rego unit tests in policies/*_test.rego, one pytest case per `test_*` rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from aob.policy.testing import PolicyTestResult, run_policy_tests

POLICIES = Path(__file__).resolve().parents[2] / "policies"
REPORT = run_policy_tests(POLICIES)
PACKS = {"tool_access", "model_tier", "egress", "approval", "approve"}


@pytest.mark.parametrize("result", REPORT.results, ids=lambda result: result.rule.removeprefix("data."))
def test_rego_rule(result: PolicyTestResult) -> None:
    assert result.outcome == "pass", f"{result.rule}: {result.outcome}: {result.message}"


def test_every_pack_has_tests() -> None:
    packages = {result.rule.rsplit(".", 1)[0] for result in REPORT.results}
    assert {f"data.aob.packs.{pack}_test" for pack in PACKS} <= packages

"""The governed-step ASL fragments and the committed flow built from them."""

from __future__ import annotations

import json
from pathlib import Path

from aob.asl import GovernanceArns, governed_call, lambda_task
from aob.asl.__main__ import governed_ping

ROOT = Path(__file__).resolve().parents[2]


def test_committed_governed_ping_flow_is_what_the_fragments_build() -> None:
    committed = json.loads((ROOT / "statemachines" / "governed_ping.asl.json").read_text())
    assert committed == governed_ping(), (
        "regenerate: python -m aob.asl > statemachines/governed_ping.asl.json"
    )


def test_governed_call_routes_deny_and_quota_and_keeps_input() -> None:
    states = governed_call(
        "Lookup",
        lambda_task("arn:fn", {}, "$.lookup"),
        GovernanceArns(),
        capability="tool",
        action_path="$.action",
        estimate_path="$.estimate",
        usage_path="$.lookup.value.usage",
        next_state="Next",
        on_denied="Stop",
        on_quota_exceeded="OutOfQuota",
    )

    assert list(states) == [
        "LookupCheckPolicy",
        "LookupIsAllowed",
        "LookupDenied",
        "LookupReserveTokens",
        "Lookup",
        "LookupSettleTokens",
    ]
    assert states["LookupIsAllowed"]["Default"] == "LookupDenied"
    assert states["LookupDenied"]["Next"] == "Stop"
    assert states["LookupReserveTokens"]["Catch"][0] == {
        "ErrorEquals": ["QuotaExceeded"],
        "ResultPath": "$.error",
        "Next": "OutOfQuota",
    }
    assert states["Lookup"]["Next"] == "LookupSettleTokens"
    assert all(s.get("ResultPath", "$.x").startswith("$.") for s in states.values() if s["Type"] == "Task")

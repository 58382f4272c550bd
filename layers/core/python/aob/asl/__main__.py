"""Write the governed-ping flow: `python -m aob.asl > statemachines/governed_ping.asl.json`."""

from __future__ import annotations

import json

from aob.asl import GovernanceArns, acquire_lease, governed_call, lambda_task, release_lease


def governed_ping(arns: GovernanceArns | None = None) -> dict:
    """A run of one governed call (to the ping function): lease, policy, quota, call, settle, release."""
    arns = arns or GovernanceArns()
    call = lambda_task(
        "${PingFunctionArn}",
        {"tenant_id.$": "$.tenant_id", "usage.$": "$.usage"},
        "$.ping",
    )
    return {
        "Comment": "One governed call: lease -> policy -> allowed? -> reserve -> call -> settle -> release.",
        "StartAt": "AcquireLease",
        "States": {
            "AcquireLease": acquire_lease(arns, next_state="PingCheckPolicy"),
            **governed_call(
                "Ping",
                call,
                arns,
                capability="tool",
                action_path="$.action",
                estimate_path="$.estimate_tokens",
                usage_path="$.ping.value.echo.usage",
                next_state="ReleaseLease",
                on_denied="ReleaseLease",
                on_quota_exceeded="ReleaseLeaseAfterQuotaExceeded",
            ),
            "ReleaseLease": release_lease(arns, End=True),
            "ReleaseLeaseAfterQuotaExceeded": release_lease(arns, Next="QuotaExceeded"),
            "QuotaExceeded": {"Type": "Fail", "Error": "QuotaExceeded", "CausePath": "$.error.Cause"},
        },
    }


if __name__ == "__main__":
    print(json.dumps(governed_ping(), indent=2))

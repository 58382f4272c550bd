"""The explicit governed step deployed to LocalStack: real Lambda environments, Postgres and Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aob.cli import run_execution

from tests.governed_scenarios import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_governed_flow(aws, deployed_stack: dict[str, str], scenario: Callable) -> None:
    def run(flow_input: dict) -> dict:
        described = run_execution(deployed_stack["GovernedPingStateMachineArn"], flow_input)
        history = aws("stepfunctions").get_execution_history(
            executionArn=described["executionArn"], maxResults=1000
        )
        return {**described, "history": history["events"]}

    scenario(run)

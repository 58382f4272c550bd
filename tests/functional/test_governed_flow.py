"""The explicit governed step (lease -> policy -> choice -> meter -> call -> settle), in moto."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.functional.harness import InProcessStack
from tests.governed_scenarios import FLOW, SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_governed_flow(stack: InProcessStack, scenario: Callable) -> None:
    scenario(lambda flow_input: stack.run(FLOW, flow_input))

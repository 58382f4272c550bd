"""A run's summary from its execution history: transitions, Lambda use, tokens and AWS cost.

Prices are the public on-demand ones for us-east-1: Standard workflows $0.025 per 1,000 state
transitions; Lambda $0.20 per million requests and $0.0000166667 per GB-second (x86_64), each
invocation billed by the millisecond for the memory its function is configured with.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from aob.recorder import StoredRecord
from aob.runs._models import LambdaUse, RunStatus, RunSummary

PRICE_PER_TRANSITION = 0.025 / 1000
PRICE_PER_REQUEST = 0.20 / 1_000_000
PRICE_PER_GB_SECOND = 0.0000166667
_TASK_ENDS = ("TaskSucceeded", "TaskFailed", "TaskTimedOut")
_LAMBDA_ENDS = ("LambdaFunctionSucceeded", "LambdaFunctionFailed", "LambdaFunctionTimedOut")


def _function_name(arn_or_name: str) -> str:
    """`arn:aws:lambda:r:a:function:NAME[:qualifier]` or a bare name -> NAME."""
    parts = arn_or_name.split(":")
    return parts[6] if len(parts) >= 7 and parts[5] == "function" else arn_or_name


def _scheduled_function(event: dict[str, Any]) -> str | None:
    """The function a TaskScheduled / LambdaFunctionScheduled event invokes, if it is a Lambda."""
    if event["type"] == "LambdaFunctionScheduled":
        return _function_name(event["lambdaFunctionScheduledEventDetails"]["resource"])
    details = event.get("taskScheduledEventDetails") or {}
    if event["type"] != "TaskScheduled" or details.get("resourceType") != "lambda":
        return None
    parameters = json.loads(details.get("parameters") or "{}")
    return _function_name(str(parameters.get("FunctionName", "unknown")))


def lambda_durations(history: Iterable[dict[str, Any]]) -> list[tuple[str, float]]:
    """(function name, ms from start to end) of each Lambda invocation in an execution history.

    Each end event's previousEventId leads back to its start and its scheduling, so parallel
    and map branches interleaving in the history pair correctly.
    """
    by_id = {event["id"]: event for event in history}
    found: list[tuple[str, float]] = []
    for event in by_id.values():
        if event["type"] not in _TASK_ENDS + _LAMBDA_ENDS:
            continue
        started = by_id.get(event.get("previousEventId", 0))
        if started is None or not started["type"].endswith("Started"):
            continue
        scheduled = by_id.get(started.get("previousEventId", 0))
        function = _scheduled_function(scheduled) if scheduled else None
        if function is not None:
            elapsed = _seconds(started["timestamp"], event["timestamp"]) * 1000
            found.append((function, max(elapsed, 1.0)))  # Lambda bills at least 1 ms
    return found


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def summarize(
    *,
    tenant_id: str,
    run_id: uuid.UUID,
    status: RunStatus,
    history: list[dict[str, Any]],
    records: list[StoredRecord],
    memory_mb: Callable[[str], int],
    started: datetime,
    stopped: datetime,
) -> RunSummary:
    """The run's summary; `memory_mb(function_name)` is each function's configured MemorySize."""
    transitions = sum(1 for event in history if event["type"].endswith("StateEntered"))
    invocations = sum(1 for event in history if _scheduled_function(event) is not None)
    per_function: dict[str, list[float]] = defaultdict(list)
    for function, ms in lambda_durations(history):
        per_function[function].append(ms)
    lambdas = []
    for function, durations in sorted(per_function.items()):
        memory = memory_mb(function)
        total_ms = sum(math.ceil(ms) for ms in durations)  # billed per started millisecond
        lambdas.append(
            LambdaUse(
                function=function,
                invocations=len(durations),
                duration_ms=total_ms,
                memory_mb=memory,
                gb_seconds=memory / 1024 * total_ms / 1000,
            )
        )
    cost = {
        "step_functions": transitions * PRICE_PER_TRANSITION,
        "lambda_requests": invocations * PRICE_PER_REQUEST,
        "lambda_compute": sum(use.gb_seconds for use in lambdas) * PRICE_PER_GB_SECOND,
    }
    cost["total"] = sum(cost.values())
    return RunSummary(
        tenant_id=tenant_id,
        run_id=run_id,
        status=status,
        state_transitions=transitions,
        lambda_invocations=invocations,
        input_tokens=sum(r.record.usage.input_tokens for r in records),
        output_tokens=sum(r.record.usage.output_tokens for r in records),
        duration_s=_seconds(started, stopped),
        lambdas=lambdas,
        cost_usd=cost,
    )

"""Workflows published per tenant, and their runs: start (API, CLI, SQS, EventBridge, S3), read, cost.

`publish(Publish(...), stack_outputs)` compiles a spec and creates its state machine;
`get_run_service().start_run(StartRun(...))` starts a run; `get_run` and `run_summary` read it.
"""

from __future__ import annotations

from aob.runs._cost import summarize
from aob.runs._models import (
    TERMINAL,
    GetAction,
    Mode,
    Principal,
    PublishedWorkflow,
    Run,
    RunDetail,
    RunRef,
    RunsRequest,
    RunSummary,
    StartAction,
    StartRun,
    SummaryAction,
)
from aob.runs._naming import name_prefix, state_machine_name
from aob.runs._publish import Publish, publish, spec_sha256
from aob.runs._service import RunService, get_run_service

__all__ = [
    "TERMINAL",
    "GetAction",
    "Mode",
    "Principal",
    "Publish",
    "PublishedWorkflow",
    "Run",
    "RunDetail",
    "RunRef",
    "RunService",
    "RunSummary",
    "RunsRequest",
    "StartAction",
    "StartRun",
    "SummaryAction",
    "get_run_service",
    "name_prefix",
    "publish",
    "spec_sha256",
    "state_machine_name",
    "summarize",
]

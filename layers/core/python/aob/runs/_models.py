"""Inputs and answers of publishing workflows and starting and querying runs (API, CLI, triggers)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, RootModel

from aob.recorder import ChainReport, StoredRecord
from aob.tenants import TenantId

Mode = Literal["explicit", "fused"]
RunStatus = Literal["pending", "running", "waiting", "succeeded", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

WorkflowName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,80}$", description="the spec's name")]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=512)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Principal(_Input):
    """Who starts the run: the policies see its subject and roles at every step."""

    subject: str = Field(min_length=1, max_length=256)
    roles: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=1)


class PublishedWorkflow(BaseModel):
    """One stored version of a workflow for a tenant, and the state machine that runs it."""

    tenant_id: str
    workflow_id: uuid.UUID
    name: str
    version: int
    mode: Mode
    spec_sha256: str
    state_machine_arn: str
    created: bool = Field(description="false: this spec and mode were already published (no-op)")
    stats: dict[str, Any] = Field(default_factory=dict, description="compile stats per node (CLI)")


class StartRun(_Input):
    """Start a run of a published workflow (its latest version unless `version` is given)."""

    tenant_id: TenantId
    workflow: WorkflowName
    version: int | None = Field(default=None, ge=1, description="default: the latest version")
    input: dict[str, JsonValue] = Field(default_factory=dict)
    principal: Principal
    idempotency_key: IdempotencyKey | None = Field(
        default=None, description="a retried start with the same key returns the first run"
    )


class RunRef(_Input):
    tenant_id: TenantId
    run_id: uuid.UUID


class Run(BaseModel):
    """A run as stored: its status is refreshed from Step Functions until it ends."""

    tenant_id: str
    run_id: uuid.UUID
    workflow: str
    version: int
    mode: Mode
    status: RunStatus
    execution_arn: str | None
    idempotency_key: str | None
    input: Any
    output: Any = None
    error: Any = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    existing: bool = Field(default=False, description="true: an earlier start with the same key")


class Step(BaseModel):
    step_id: uuid.UUID
    state_name: str
    kind: str
    attempt: int
    status: str
    started_at: datetime
    finished_at: datetime | None = None


class RunEvent(BaseModel):
    seq: int
    event_type: str
    payload: Any
    recorded_at: datetime


class RunDetail(BaseModel):
    """What `aob runs show` prints: the run, its steps, its DecisionRecords and their chain check."""

    run: Run
    steps: list[Step]
    records: list[StoredRecord]
    chain: ChainReport
    events: list[RunEvent]


class LambdaUse(BaseModel):
    function: str
    invocations: int
    duration_ms: float
    memory_mb: int
    gb_seconds: float


class RunSummary(BaseModel):
    """What a run cost, from its execution history and its records' token usage."""

    tenant_id: str
    run_id: uuid.UUID
    status: RunStatus
    state_transitions: int
    lambda_invocations: int
    input_tokens: int
    output_tokens: int
    duration_s: float
    lambdas: list[LambdaUse]
    cost_usd: dict[str, float] = Field(description="step_functions, lambda_requests, lambda_compute, total")


class StartAction(StartRun):
    action: Literal["start"]


class GetAction(RunRef):
    action: Literal["get"]


class SummaryAction(RunRef):
    action: Literal["summary"]


class RunsRequest(
    RootModel[Annotated[StartAction | GetAction | SummaryAction, Field(discriminator="action")]]
):
    """The runs function's event: `{"action": "start" | "get" | "summary", ...}`."""

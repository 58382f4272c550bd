"""The DecisionRecord of one step, as stored, and the result of verifying a run's chain."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Node(_Part):
    """The workflow node the step ran: its state name and kind (`model`, `tool`, `policy`, ...)."""

    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)


class ModelRef(_Part):
    name: str = Field(min_length=1)
    version: str | None = None


class ToolCall(_Part):
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)
    output: Any = None


class PolicyRef(_Part):
    """The policy decisions that governed the step and the bundle that made them."""

    decision_ids: list[str] = Field(default_factory=list)
    bundle_digest: str | None = None


class Usage(_Part):
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


class Timings(_Part):
    """When the step ran; duration_ms defaults to ended_at - started_at."""

    started_at: AwareDatetime
    ended_at: AwareDatetime
    duration_ms: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        if self.duration_ms is None:
            elapsed = (self.ended_at - self.started_at).total_seconds()
            object.__setattr__(self, "duration_ms", round(elapsed * 1000))
        return self


class DecisionRecord(_Part):
    """What happened at one step of a run and what governed it; hashed into the run's chain."""

    run_id: uuid.UUID
    step_id: uuid.UUID | None = None
    attempt: int = Field(default=1, gt=0)
    node: Node
    outcome: Literal["succeeded", "failed", "denied", "waiting", "skipped"]
    inputs: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list)
    model: ModelRef | None = None
    tool: ToolCall | None = None
    output: Any = Field(default=None, description="the model's reply (a tool's result is tool.output)")
    policy: PolicyRef = Field(default_factory=PolicyRef)
    usage: Usage = Field(default_factory=Usage)
    timings: Timings
    error: dict[str, Any] | None = None


class StoredRecord(BaseModel):
    """A DecisionRecord as written: its place in the run's chain and its hashes."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str
    record_id: uuid.UUID
    seq: int
    prev_hash: str | None
    hash: str
    recorded_at: datetime
    record: DecisionRecord


class ChainReport(BaseModel):
    """The verification of one run's chain: ok, or the first record (by seq) that breaks it and why."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    records: int
    first_bad_seq: int | None = None
    reason: str | None = None

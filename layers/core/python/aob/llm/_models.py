"""What a model call takes (ChatRequest, OpenAI chat-completions shape) and what it answers (ChatResult)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from aob.policy import Principal, StepGovernance
from aob.recorder import RecordTarget
from aob.tenants import TenantId

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@/+|-]{1,200}$")]
FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="OpenAI function name")]
MAX_OUTPUT_TOKENS = 1_000_000

# Body fields the gateway owns: `extra_body` may not set them.
RESERVED_BODY_FIELDS = frozenset(
    {"model", "messages", "tools", "tool_choice", "max_tokens", "max_completion_tokens", "temperature"}
    | {"stream", "stream_options", "n"}  # one non-streamed choice per call: usage and fallback rely on it
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ContentPart(BaseModel):
    """One part of a multi-part content (`text`, `image_url`, ...): passed to the provider as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: Name


Content = str | list[ContentPart]


class FunctionCall(_Strict):
    name: FunctionName
    arguments: str = Field(description="JSON text, as the model produced it")


class ToolCall(_Strict):
    id: str = Field(min_length=1, max_length=200)
    type: Literal["function"] = "function"
    function: FunctionCall


class SystemMessage(_Strict):
    role: Literal["system", "developer"]
    content: Content
    name: FunctionName | None = None


class UserMessage(_Strict):
    role: Literal["user"]
    content: Content
    name: FunctionName | None = None


class AssistantMessage(_Strict):
    role: Literal["assistant"]
    content: Content | None = None
    name: FunctionName | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class ToolMessage(_Strict):
    role: Literal["tool"]
    content: Content
    tool_call_id: str = Field(min_length=1, max_length=200)


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]


class FunctionDefinition(_Strict):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, JsonValue] | None = Field(default=None, description="JSON Schema of the arguments")
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class ToolChoiceFunction(_Strict):
    name: FunctionName


class NamedToolChoice(_Strict):
    type: Literal["function"] = "function"
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ChatRequest(_Strict):
    """One governed model call: who asks, at which tier, with what (OpenAI chat-completions fields)."""

    tenant_id: TenantId
    principal: Principal
    run_id: uuid.UUID | None = None
    step_id: uuid.UUID | None = None
    tier: Name = Field(description="model tier, e.g. small; the gateway's routes map it to providers")
    messages: list[Message] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_OUTPUT_TOKENS,
        description="completion limit; default AOB_MODEL_DEFAULT_MAX_TOKENS",
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    data_classes: list[Name] = Field(default_factory=list, description="classes of data the prompt carries")
    extra_body: dict[str, JsonValue] = Field(
        default_factory=dict, description="provider-specific body fields passed through, e.g. ignore_eos"
    )
    record: RecordTarget | None = Field(
        default=None, description="fused mode: record the step's DecisionRecord (node and session lease)"
    )
    governance: StepGovernance | None = Field(
        default=None,
        description="explicit mode: the state machine's decision and reservation, used instead of its own",
    )

    @model_validator(mode="after")
    def _recorded_steps_are_named(self) -> Self:
        if self.record and (self.run_id is None or self.step_id is None):
            raise ValueError("record needs run_id and step_id: pass the run's and step's ids, or no record")
        return self

    @field_validator("extra_body")
    @classmethod
    def _not_reserved(cls, extra: dict[str, JsonValue]) -> dict[str, JsonValue]:
        clash = sorted(RESERVED_BODY_FIELDS & extra.keys())
        if clash:
            raise ValueError(
                f"{', '.join(clash)} may not be set in extra_body (use the request's own fields)"
            )
        return extra

    def prompt_body(self) -> dict[str, Any]:
        """The prompt part of the provider's body: messages, tools and tool_choice as JSON, nulls left out."""
        return self.model_dump(mode="json", include={"messages", "tools", "tool_choice"}, exclude_none=True)


class Usage(BaseModel):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)


Outcome = Literal[
    "ok",
    "timeout",
    "connection_error",
    "server_error",
    "rate_limited",
    "bad_response",
    "breaker_open",
    "trial_in_progress",
    "not_ready",
    "model_not_served",
]


class Attempt(BaseModel):
    """One provider of the tier, tried or skipped, in route order."""

    provider: str
    model: str
    outcome: Outcome
    latency_ms: float | None = Field(default=None, description="None when skipped without a call")


class ChatResult(BaseModel):
    """The provider's answer (OpenAI-shaped `choices`, untouched) and the record of the call."""

    id: str
    tenant_id: str
    run_id: uuid.UUID | None
    step_id: uuid.UUID | None
    tier: str
    choices: list[dict[str, JsonValue]]
    usage: Usage
    provider: str
    model: str = Field(description="the model that answered, as the provider names it")
    model_version: str | None = Field(description="server version (warm-pool probe) or system_fingerprint")
    latency_ms: float = Field(description="the answering provider's call")
    attempts: list[Attempt]
    decision_id: uuid.UUID
    reservation_id: str


class Readiness(BaseModel):
    """A provider's last warm-pool probe, as the router reads it from Redis."""

    provider: str
    ready: bool
    models: list[str] = Field(default_factory=list, description="model ids from /v1/models")
    version: str | None = Field(default=None, description="server version from /version (vLLM)")
    latency_ms: float
    checked_at: datetime
    error: str | None = None


class WarmPoolReport(BaseModel):
    """What one warm-pool run found, provider by provider."""

    providers: list[Readiness]

"""What a policy check takes (PolicyInput) and what it answers (PolicyDecision)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator

# Same rule as the tenants table's CHECK.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# Identifiers that reach the Rego engine and its messages: no quotes, spaces or control characters.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@/+|-]{1,200}$")]
# Argument names become redaction paths (`$.args.<name>`): no dots.
ArgName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")]
# rego-cpp wraps integers past 64 bits silently and cuts strings at NUL: refuse both up front.
# JSON-safe integers (2**53) keep amounts exact everywhere they travel.
MAX_SAFE_INT = 2**53


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Principal(_Model):
    subject: Name
    roles: list[Name] = []


def _check_json(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int) and abs(value) > MAX_SAFE_INT:
        raise ValueError(f"{where}: integers must lie within ±2**53")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: numbers must be finite")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{where}: strings may not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_json(key, where)
            _check_json(item, f"{where}.{key}")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")


class ToolAction(_Model):
    """A tool call: the tool, its arguments and the data classes the arguments carry."""

    kind: Literal["tool"]
    tool: Name
    args: dict[ArgName, JsonValue] = {}
    data_classes: list[Name] = []

    @field_validator("args")
    @classmethod
    def _engine_safe(cls, args: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for name, value in args.items():
            _check_json(value, name)
        return args


class ModelAction(_Model):
    """A model call at a tier (small, medium, large), with the data classes of its prompt."""

    kind: Literal["model"]
    tier: Name
    model: Name | None = None
    data_classes: list[Name] = []


class EgressAction(_Model):
    """Data leaving the system (an export, a webhook), with the data classes it carries."""

    kind: Literal["egress"]
    destination: Name
    data_classes: list[Name] = []


class ApproveAction(_Model):
    """A human deciding an approval step: who asked for it (`requested_by`) and which roles may decide."""

    kind: Literal["approve"]
    node: Name
    approver_roles: list[Name] = Field(min_length=1)
    requested_by: Name


type Action = Annotated[ToolAction | ModelAction | EgressAction | ApproveAction, Field(discriminator="kind")]


class PolicyInput(_Model):
    """One governed step asking whether it may act."""

    tenant_id: Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]
    principal: Principal
    action: Action
    run_id: UUID | None = None
    step_id: UUID | None = None


class PolicyVerdict(BaseModel):
    """One bundle's answer to one input."""

    model_config = ConfigDict(frozen=True)

    decision_id: UUID
    bundle_digest: str
    allow: bool
    reasons: list[str]
    obligations: dict[str, JsonValue]


class PolicyDecision(PolicyVerdict):
    """What a step enforces: the active bundle's verdict, with a candidate bundle's beside it.

    A deny is a normal decision (`allow` false), not an error. `shadow_disagrees` is true when the
    candidate would have allowed differently or attached different obligations.
    """

    tenant_id: str
    run_id: UUID | None = None
    step_id: UUID | None = None
    shadow: PolicyVerdict | None = None
    shadow_disagrees: bool = False

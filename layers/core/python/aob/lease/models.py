"""Session leases' task inputs and output."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from aob.tenants import TenantId

MAX_TTL_S = 900.0  # a Lambda's longest run; longer work renews

SessionId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9:_.-]{0,127}$", description="letters, digits and : _ . -")
]
Holder = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9:/_.@-]{0,255}$",
        description="who holds the lease, unique per writer, e.g. the execution ARN",
    ),
]
FencingToken = Annotated[int, Field(gt=0, description="the token acquire returned, to renew that lease only")]
TtlSeconds = Annotated[float, Field(gt=0, le=MAX_TTL_S, description="seconds until the lease expires")]


class _LeaseInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_id: TenantId
    session_id: SessionId
    holder: Holder


class AcquireLease(_LeaseInput):
    """Take the session's lease, or extend it if this holder has it already."""

    action: Literal["acquire"] = "acquire"
    ttl_s: TtlSeconds = 60.0


class RenewLease(_LeaseInput):
    action: Literal["renew"] = "renew"
    ttl_s: TtlSeconds = 60.0
    fencing_token: FencingToken | None = None


class ReleaseLease(_LeaseInput):
    action: Literal["release"] = "release"
    fencing_token: FencingToken | None = None


class LeaseRequest(RootModel[AcquireLease | RenewLease | ReleaseLease]):
    """The session-lease function's event, chosen by `action`."""

    root: Annotated[AcquireLease | RenewLease | ReleaseLease, Field(discriminator="action")]


class Lease(BaseModel):
    tenant_id: str
    session_id: str
    holder: str
    fencing_token: int = Field(description="pass it with every write of this lease; higher than any before")
    expires_at: datetime
    released: bool = False

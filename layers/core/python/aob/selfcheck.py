"""The self-check flow's step: proves a deployed function reaches the layer, Postgres and Redis.

Each call records one event in the Postgres event store and one key in Redis, so a test (or an
operator after a deploy) can see that the whole path works. On request it fails: once with a
transient error that the state machine's Retry absorbs, or for good with an error its Catch
routes, which shows that handler exceptions keep their class name as the Step Functions error.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

import aob
from aob.cache import get_redis
from aob.db import get_pool
from aob.errors import AobError

SYSTEM_TENANT = "system"
KEY_TTL_S = 24 * 3600

_ENSURE_TENANT = """
INSERT INTO tenants (tenant_id, name) VALUES (%(tenant_id)s, 'AOB system')
ON CONFLICT (tenant_id) DO NOTHING
"""
_APPEND_EVENT = """
INSERT INTO events (tenant_id, stream_id, seq, event_type, payload)
VALUES (
  %(tenant_id)s, %(stream_id)s,
  (SELECT coalesce(max(seq), 0) + 1 FROM events
   WHERE tenant_id = %(tenant_id)s AND stream_id = %(stream_id)s),
  'selfcheck.step_recorded', %(payload)s
)
RETURNING event_id, seq
"""


class TransientSelfcheckError(AobError):
    """A failure that a retry fixes (raised on the first attempt when asked to)."""


class SelfcheckFailed(AobError):
    """A failure no retry fixes (raised when asked to); the flow's Catch takes it."""


class SelfcheckInput(BaseModel):
    """The self-check flow's input."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="hello", max_length=1000)
    fail: Literal["never", "first_attempt", "always"] = Field(
        default="never", description="make the record step fail: never, on its first attempt, or always"
    )


class SelfcheckRequest(BaseModel):
    """One step's task input, as the state machine builds it."""

    model_config = ConfigDict(extra="forbid")

    execution: str = Field(min_length=1, max_length=80, description="Step Functions execution name")
    step: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    flow: SelfcheckInput = SelfcheckInput()


class SelfcheckResult(BaseModel):
    execution: str
    step: str
    attempt: int
    event_id: str
    event_seq: int
    redis_key: str
    layer_version: str


def redis_key(execution: str, step: str) -> str:
    return f"aob:selfcheck:{execution}:{step}"


def run_step(request: SelfcheckRequest) -> SelfcheckResult:
    redis = get_redis()
    key = redis_key(request.execution, request.step)
    attempts_key = f"{key}:attempts"
    attempt = int(redis.incr(attempts_key))
    redis.expire(attempts_key, KEY_TTL_S)
    if request.flow.fail == "always":
        raise SelfcheckFailed(f"step {request.step} was asked to fail (fail=always)")
    if request.flow.fail == "first_attempt" and attempt == 1:
        raise TransientSelfcheckError(f"step {request.step} fails its first attempt on purpose")

    payload = {"step": request.step, "message": request.flow.message, "attempt": attempt}
    with get_pool().connection() as conn, conn.transaction():
        conn.execute(_ENSURE_TENANT, {"tenant_id": SYSTEM_TENANT})
        event_id, seq = conn.execute(
            _APPEND_EVENT,
            {
                "tenant_id": SYSTEM_TENANT,
                "stream_id": f"selfcheck:{request.execution}",
                "payload": json.dumps(payload),
            },
        ).fetchone()
    redis.set(key, json.dumps({"event_id": str(event_id), **payload}), ex=KEY_TTL_S)
    return SelfcheckResult(
        execution=request.execution,
        step=request.step,
        attempt=attempt,
        event_id=str(event_id),
        event_seq=seq,
        redis_key=key,
        layer_version=aob.__version__,
    )

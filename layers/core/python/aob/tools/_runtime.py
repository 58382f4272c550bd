"""The container's ToolGateway, built on first use from `AOB_TOOLS_*` settings.

AOB_TOOLS_FILE              optional JSON file of http and lambda tools (format: aob.tools._specs);
                            a relative path is taken from LAMBDA_TASK_ROOT, else the working directory
AOB_TOOLS_MAX_RESULT_BYTES  cap on a result's JSON, past which it is cut (default 65536)
AOB_TOOLS_IDEMPOTENCY_TTL_S how long a call's result is kept for retries and replays (default a week)
AOB_TOOLS_INLINE_RESULT_BYTES with a claims bucket, a result's JSON past this goes to S3 and the state
                            gets its claim (default 65536, at most 98304: see aob.tools._claims)
AOB_CLAIMS_BUCKET           the S3 bucket for claims (unset: no claim check, results are cut instead)

Policy, metering, Redis and the step recorder (Postgres) come from their own settings
(AOB_POLICY_*, AOB_REDIS_URL, AOB_DATABASE_URL, ...).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import httpx
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from aob.cache import get_redis
from aob.errors import ConfigurationError
from aob.metering import get_metering
from aob.policy import get_policy_service
from aob.recorder import get_recorder
from aob.tools import _claims, _idempotency
from aob.tools._gateway import DEFAULT_MAX_RESULT_BYTES, ToolGateway
from aob.tools._idempotency import DEFAULT_EXPIRES_AFTER_S, IdempotentCalls
from aob.tools._registry import ToolRegistry

ENV_PREFIX = "AOB_TOOLS_"


class ToolSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    file: str | None = None
    max_result_bytes: int = Field(default=DEFAULT_MAX_RESULT_BYTES, ge=1)
    idempotency_ttl_s: int = Field(default=DEFAULT_EXPIRES_AFTER_S, ge=1)
    inline_result_bytes: int = Field(
        default=_claims.DEFAULT_INLINE_RESULT_BYTES, ge=1, le=_claims.MAX_INLINE_RESULT_BYTES
    )


@functools.cache
def get_http_client() -> httpx.Client:
    """The container's HTTP client for http tools (timeouts are per tool; redirects not followed)."""
    return httpx.Client(follow_redirects=False)


@functools.cache
def get_tool_gateway() -> ToolGateway:
    """The process's gateway; bad settings or a bad tools file raise ConfigurationError at the first call.

    Tests that change the environment call `get_tool_gateway.cache_clear()`.
    """
    try:
        settings = ToolSettings()
    except ValidationError as exc:
        problems = "; ".join(f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid tool gateway settings: {problems}") from exc
    tools_file = Path(os.environ.get("LAMBDA_TASK_ROOT", ".")) / settings.file if settings.file else None
    return ToolGateway(
        ToolRegistry.load(tools_file, get_http_client),
        get_policy_service(),
        get_metering(),
        IdempotentCalls(
            get_redis(), key_prefix=_idempotency.KEY_PREFIX, expires_after_s=settings.idempotency_ttl_s
        ),
        max_result_bytes=settings.max_result_bytes,
        recorder=get_recorder(),
        claims=_claims.S3ClaimStore(bucket) if (bucket := os.environ.get("AOB_CLAIMS_BUCKET")) else None,
        inline_result_bytes=settings.inline_result_bytes,
    )

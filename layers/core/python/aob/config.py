"""Runtime settings, read once per process from `AOB_*` environment variables.

`get_settings()` is cached; tests that change the environment call `get_settings.cache_clear()`
(and `aob.db.close_pool()` / `aob.cache.close_redis()` so clients pick up the new URLs).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from aob.errors import ConfigurationError

ENV_PREFIX = "AOB_"
MASK = "***"

_URL_FIELDS = frozenset({"database_url", "redis_url", "aws_endpoint_url"})
# Libpq accepts the password in a URL query or a key=value conninfo string as well as user:pass@.
_QUERY_SECRET = re.compile(r"(^|&)((?:ssl)?password|passwd)=[^&]*", re.IGNORECASE)
_CONNINFO_SECRET = re.compile(r"\b((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***`: safe for logs, errors and CLI output."""
    if "://" not in url:
        return _CONNINFO_SECRET.sub(rf"\g<1>{MASK}", url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK  # unparseable: print nothing rather than risk printing a secret
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")  # the last '@': a raw '@' may sit in the password
    if at:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{hostport}" if colon else netloc
    query = _QUERY_SECRET.sub(rf"\g<1>\g<2>={MASK}", parts.query)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


class Settings(BaseSettings):
    """Where AOB finds Postgres, Redis and AWS, and how hard it tries to reach them."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        validate_by_name=True,
        validate_by_alias=True,
        hide_input_in_errors=True,  # inputs are URLs that may carry passwords
    )

    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The standard AWS SDK variable, not AOB_-prefixed, so boto3 and AOB agree; None = real AWS.
    aws_endpoint_url: str | None = Field(default=None, validation_alias="AWS_ENDPOINT_URL")
    # A Lambda container serves one request at a time: keep no idle connections, allow a few.
    db_pool_min: int = Field(default=0, ge=0)
    db_pool_max: int = Field(default=4, ge=1)
    db_pool_max_idle_s: float = Field(default=60.0, gt=0)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    redis_timeout_s: float = Field(default=2.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _postgres_scheme(cls, value: str) -> str:
        if not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL, e.g. postgresql://user@host:5432/dbname")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL, e.g. redis://127.0.0.1:6379/0")
        return value

    @field_validator("aws_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if not value:
            return None  # `export AWS_ENDPOINT_URL=` means real AWS
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL, e.g. http://127.0.0.1:4566; unset it for real AWS")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(
                f"AOB_DB_POOL_MIN ({self.db_pool_min}) exceeds AOB_DB_POOL_MAX ({self.db_pool_max})"
            )
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name in _URL_FIELDS and isinstance(value, str) else value


def _describe(error: ErrorDetails) -> str:
    """One validation error as `VARIABLE: problem`, never quoting the (possibly secret) input."""
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return message
    loc = str(error["loc"][0])  # a field name, or already the variable when the field has an alias
    variable = f"{ENV_PREFIX}{loc.upper()}" if loc in Settings.model_fields else loc
    return f"{variable}: {message}"


@functools.cache
def get_settings() -> Settings:
    """The process's settings; a bad value raises ConfigurationError naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise ConfigurationError(f"invalid AOB settings: {problems}") from exc

"""The container's PolicyService, built on first use from `AOB_POLICY_*` settings.

AOB_POLICY_BUNDLE            path of the signed active bundle; a relative path is taken from
                             LAMBDA_TASK_ROOT (the function's code), else the working directory
AOB_POLICY_CANDIDATE_BUNDLE  optional path of a candidate bundle, evaluated in shadow
AOB_POLICY_TRUSTED_KEYS      JSON {key_id: base64 Ed25519 public key (or PEM)}
AOB_POLICY_CACHE_SIZE        decisions cached per container (LRU), default 4096
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from aob.errors import BundleRejected, ConfigurationError
from aob.policy._keys import trusted_keys
from aob.policy._record import PostgresDecisionRecorder
from aob.policy._service import DEFAULT_CACHE_SIZE, PolicyService
from aob.policy._store import PolicyBundleStore
from aob.tenants import get_tenant

ENV_PREFIX = "AOB_POLICY_"


class PolicySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True)

    bundle: str | None = None
    candidate_bundle: str | None = None
    trusted_keys: dict[str, str] = {}
    cache_size: int = Field(default=DEFAULT_CACHE_SIZE, ge=0)


def _bundle_path(variable: str, value: str) -> Path:
    if "://" in value:
        raise ConfigurationError(f"{variable}: only local bundle paths are supported so far, not {value}")
    return Path(os.environ.get("LAMBDA_TASK_ROOT", ".")) / value  # an absolute value stays as it is


@functools.cache
def get_policy_service() -> PolicyService:
    """The process's PolicyService; bad settings or a rejected active bundle raise at the first call.

    Tests that change the environment call `get_policy_service.cache_clear()`.
    """
    try:
        settings = PolicySettings()
    except SettingsError as exc:  # a JSON variable that does not parse
        raise ConfigurationError(
            f"invalid policy settings: {exc} (AOB_POLICY_TRUSTED_KEYS must be JSON)"
        ) from exc
    except ValidationError as exc:
        problems = "; ".join(f"{ENV_PREFIX}{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigurationError(f"invalid policy settings: {problems}") from exc
    if not settings.bundle:
        raise ConfigurationError(
            f"{ENV_PREFIX}BUNDLE is not set: sign a bundle with `aob policy sign` and point it at the file"
        )
    store = PolicyBundleStore(trusted_keys(settings.trusted_keys))
    store.load(_bundle_path(f"{ENV_PREFIX}BUNDLE", settings.bundle))
    if settings.candidate_bundle:
        # A rejected candidate is logged by the store and only means no shadow: enforcement goes on.
        with contextlib.suppress(BundleRejected):
            store.load(_bundle_path(f"{ENV_PREFIX}CANDIDATE_BUNDLE", settings.candidate_bundle), "candidate")
    return PolicyService(store, PostgresDecisionRecorder(), get_tenant, cache_size=settings.cache_size)

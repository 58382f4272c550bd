"""Running a tool once per call: idempotency keys, and powertools idempotency records in Redis.

The key of a call is `tool:` + the SHA-256 of the canonical JSON (sorted keys, no spaces) of
`{"tenant_id", "run_id", "step_id", "tool", "args"}`, the arguments being the validated ones
(defaults filled in, before redaction). No attempt number, request id or clock enters it: a
retried or replayed step has the same key, finds the record of the attempt that ran the tool,
and gets its result without running the tool again.

powertools keeps the record at `<prefix>tool-call#<sha256 of the key>`: IN_PROGRESS while the
tool runs (for at most the tool's timeout plus a margin, after which a crashed attempt's lock
lapses), then COMPLETED with the result for `expires_after_s`. An exception from the tool
deletes the record, so a failed call may run again. What is not covered: a process killed after
the tool answered and before the record was written runs the tool again on retry; HTTP tools
send the key as `Idempotency-Key` so the upstream can close that gap too.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyInconsistentStateError,
    IdempotencyPersistenceLayerError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.cache import CachePersistenceLayer
from pydantic import JsonValue

from aob.errors import ServiceUnavailable, ToolCallInProgress
from aob.tools._models import ToolCall

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

KEY_PREFIX = "aob:"
DEFAULT_EXPIRES_AFTER_S = 7 * 86_400  # a run replayed within a week reuses its tool results
IN_PROGRESS_MARGIN_S = 5.0


def idempotency_key(call: ToolCall, args: dict[str, JsonValue]) -> str:
    """The call's key: the same for every attempt of the step, different for any other call."""
    identity = {
        "tenant_id": call.tenant_id,
        "run_id": str(call.run_id),
        "step_id": str(call.step_id),
        "tool": call.tool,
        "args": args,
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "tool:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Executed:
    result: JsonValue
    duration_ms: float
    replayed: bool  # an earlier attempt ran the tool; this one returned its recorded result


class _Deadline:
    """What powertools asks of a Lambda context: how long the in-progress lock may last."""

    def __init__(self, seconds: float) -> None:
        self._ms = int(seconds * 1000)

    def get_remaining_time_in_millis(self) -> int:
        return self._ms


class IdempotentCalls:
    """Runs each tool call at most once per key, on powertools idempotency over one Redis client."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str = KEY_PREFIX,
        expires_after_s: int = DEFAULT_EXPIRES_AFTER_S,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        # CachePersistenceLayer is the name powertools recommends, but it is an alias of the class
        # whose deprecation warning asks for it: silence that one warning.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._store = CachePersistenceLayer(client=cast(Any, client))  # redis.Redis fits its protocol
        self._key_prefix = f"{key_prefix}tool-call"
        self._expires_after_s = expires_after_s
        self._clock = clock

    def run(self, key: str, execute: Callable[[], JsonValue], *, timeout_s: float) -> Executed:
        """`execute()`'s result, or the one recorded under `key` by an earlier attempt.

        ToolCallInProgress if another attempt holds the key; ServiceUnavailable if Redis fails.
        """
        ran = False

        def once(call: dict[str, str]) -> dict[str, Any]:
            nonlocal ran
            ran = True
            started = self._clock()
            result = execute()
            return {"result": result, "duration_ms": round((self._clock() - started) * 1000, 3)}

        config = IdempotencyConfig(
            event_key_jmespath="idempotency_key",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=self._expires_after_s,
            hash_function="sha256",
            lambda_context=cast("LambdaContext", _Deadline(timeout_s + IN_PROGRESS_MARGIN_S)),
        )
        guarded = idempotent_function(
            once,
            data_keyword_argument="call",
            persistence_store=self._store,
            config=config,
            key_prefix=self._key_prefix,
        )
        try:
            recorded = guarded(call={"idempotency_key": key})
        except IdempotencyAlreadyInProgressError as exc:
            raise ToolCallInProgress(
                f"tool call {key} is running in another attempt; retry after it finishes"
            ) from exc
        except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as exc:
            raise ServiceUnavailable(f"the idempotency store failed for tool call {key}: {exc}") from exc
        return Executed(result=recorded["result"], duration_ms=recorded["duration_ms"], replayed=not ran)

"""`lambda` tools: invoke another function (RequestResponse) with the arguments as its event.

The function's return value is the result. A function error (`FunctionError` in the answer)
raises ToolFailed carrying the function's `errorType`; throttling and service errors raise
ToolUnavailable. botocore's own retries are off: a retried invoke could repeat a side effect,
and retries belong to the state machine, which the idempotency key makes safe.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, JsonValue

from aob.config import get_settings
from aob.errors import ToolFailed, ToolResponseTooLarge, ToolUnavailable
from aob.tools._http import DEFAULT_MAX_RESPONSE_BYTES
from aob.tools._tool import DEFAULT_TIMEOUT_S, AnyJson, Tool

_RETRYABLE = frozenset(
    {"TooManyRequestsException", "ServiceException", "ResourceNotReadyException", "ResourceConflictException"}
)


def lambda_client(timeout_s: float) -> Any:
    """A Lambda client for AWS_ENDPOINT_URL (or AWS) that waits `timeout_s` and never retries."""
    config = Config(
        read_timeout=timeout_s, connect_timeout=min(timeout_s, 5.0), retries={"total_max_attempts": 1}
    )
    return boto3.client("lambda", endpoint_url=get_settings().aws_endpoint_url, config=config)


class LambdaTool(Tool):
    kind = "lambda"

    def __init__(
        self,
        name: str,
        description: str,
        args_model: type[BaseModel],
        result_model: type[BaseModel] = AnyJson,
        *,
        function: str,
        client: Any = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        super().__init__(name, description, args_model, result_model, timeout_s=timeout_s)
        self.function = function
        self.max_response_bytes = max_response_bytes
        self._given_client = client

    @cached_property
    def _client(self) -> Any:
        """The injected client, or one made on first use (nothing connects at import)."""
        return self._given_client or lambda_client(self.timeout_s)

    def execute(self, args: dict[str, JsonValue], idempotency_key: str) -> JsonValue:
        where = f"tool {self.name} (function {self.function})"
        try:
            response = self._client.invoke(
                FunctionName=self.function,
                InvocationType="RequestResponse",
                Payload=json.dumps(args).encode(),
            )
            payload = response["Payload"].read(self.max_response_bytes + 1)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if code in _RETRYABLE:
                raise ToolUnavailable(f"{where}: Lambda answered {code}") from exc
            raise ToolFailed(f"{where}: Lambda refused the invoke: {code}", error_type=code) from exc
        except BotoCoreError as exc:  # endpoint unreachable, read timeout
            raise ToolUnavailable(f"{where}: {type(exc).__name__}: {exc}") from exc
        if len(payload) > self.max_response_bytes:
            raise ToolResponseTooLarge(f"{where}: the response passed {self.max_response_bytes} bytes")
        if "FunctionError" in response:
            error = _error(payload)
            error_type = str(error.get("errorType") or response["FunctionError"])
            message = error.get("errorMessage", "")
            raise ToolFailed(f"{where} failed: {error_type}: {message}", error_type=error_type)
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError as exc:
            raise ToolFailed(f"{where}: the response is not JSON", error_type="InvalidJson") from exc
        return self.checked_result(parsed)


def _error(payload: bytes) -> dict[str, Any]:
    """A function error's `{"errorType", "errorMessage", ...}`, or {} if the payload is not one."""
    try:
        error = json.loads(payload)
    except ValueError:
        return {}
    return error if isinstance(error, dict) else {}

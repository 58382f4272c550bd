"""The port that answers a waiting Step Functions task, and its adapter on the Step Functions API.

A task token is a bearer credential for the waiting step: it never appears in an error message,
a log line or a chained exception here (botocore's messages may quote it).
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, Protocol

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from aob.config import get_settings
from aob.errors import ApprovalExpired, ConfigurationError, ServiceUnavailable

# What Step Functions answers when it no longer waits on the token: timed out, already answered,
# or the execution ended (stopped, failed elsewhere).
GONE = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})


class TaskCallback(Protocol):
    def succeed(self, task_token: str, output: dict[str, Any]) -> None:
        """Resume the waiting task with `output`; ApprovalExpired if it no longer waits."""
        ...

    def fail(self, task_token: str, error: str, cause: str) -> None:
        """Fail the waiting task with `error` (its Catch's ErrorEquals); ApprovalExpired as above."""
        ...


class StepFunctionsCallback:
    """SendTaskSuccess / SendTaskFailure on AWS_ENDPOINT_URL (or AWS); the client is made on first use."""

    def __init__(self, client: Any = None) -> None:
        self._given_client = client

    @cached_property
    def _client(self) -> Any:
        return self._given_client or boto3.client(
            "stepfunctions", endpoint_url=get_settings().aws_endpoint_url
        )

    def succeed(self, task_token: str, output: dict[str, Any]) -> None:
        self._send("SendTaskSuccess", taskToken=task_token, output=json.dumps(output))

    def fail(self, task_token: str, error: str, cause: str) -> None:
        self._send("SendTaskFailure", taskToken=task_token, error=error, cause=cause)

    def _send(self, operation: str, **kwargs: Any) -> None:
        method = (
            self._client.send_task_success
            if operation == "SendTaskSuccess"
            else self._client.send_task_failure
        )
        try:
            method(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            if code in GONE:
                raise ApprovalExpired(
                    f"Step Functions no longer waits for this approval ({code}): it timed out or was answered"
                ) from None
            if code in ("AccessDeniedException", "AccessDenied"):
                raise ConfigurationError(
                    f"this function may not call states:{operation}: grant it in its IAM policy"
                ) from None
            raise ServiceUnavailable(
                f"Step Functions refused {operation}: {code}; nothing was decided"
            ) from None
        except BotoCoreError as exc:
            raise ServiceUnavailable(
                f"Step Functions did not answer {operation} ({type(exc).__name__}); nothing was decided"
            ) from None

"""Results the executor reports itself, when the runtime cannot: timeouts and runtime exits.

Shaped as AWS reports them: the payload LocalStack returns to the caller, and the log lines that
close the invocation (START comes from the runtime's own output).
"""

from __future__ import annotations

import json
import math
import signal
from datetime import UTC, datetime

from localstack.services.lambda_.invocation.lambda_models import InvocationResult

TIMED_OUT = "Sandbox.Timedout"
EXITED = "Runtime.ExitError"
OUT_OF_MEMORY = "Runtime.OutOfMemory"
# After these the process is gone or must go: the environment gets a fresh one.
FATAL_ERRORS = frozenset({TIMED_OUT, EXITED, OUT_OF_MEMORY})


def timed_out(request_id: str, timeout_s: float, output: str, memory_mb: int) -> InvocationResult:
    message = f"Task timed out after {timeout_s:.2f} seconds"
    logs = f"{output}{_now()} {request_id} {message}\n" + _closing_lines(
        request_id, timeout_s * 1000, memory_mb, "Status: timeout"
    )
    return _error(request_id, TIMED_OUT, f"RequestId: {request_id} Error: {message}", logs)


def exited(
    request_id: str, returncode: int, duration_ms: float, output: str, memory_mb: int
) -> InvocationResult:
    error = f"Runtime exited with error: {_describe_exit(returncode)}"
    logs = output + _closing_lines(request_id, duration_ms, memory_mb, f"Status: error\tError Type: {EXITED}")
    return _error(request_id, EXITED, f"RequestId: {request_id} Error: {error}", logs)


def exited_during_init(returncode: int) -> bytes:
    return json.dumps(
        {
            "errorType": EXITED,
            "errorMessage": f"Error: Runtime exited with error: {_describe_exit(returncode)}",
        }
    ).encode()


def _describe_exit(returncode: int) -> str:
    """As AWS words it (Go's ExitError): 'exit status 1', 'signal: killed'."""
    if returncode >= 0:
        return f"exit status {returncode}"
    return f"signal: {(signal.strsignal(-returncode) or str(-returncode)).lower()}"


def error_type(result: InvocationResult) -> str | None:
    if not result.is_error or not result.payload:
        return None
    try:
        return json.loads(result.payload).get("errorType")
    except (ValueError, AttributeError):
        return None


def _error(request_id: str, error_type: str, message: str, logs: str) -> InvocationResult:
    payload = json.dumps({"errorType": error_type, "errorMessage": message}).encode()
    return InvocationResult(request_id, payload, is_error=True, logs=logs)


def _closing_lines(request_id: str, duration_ms: float, memory_mb: int, status: str) -> str:
    return (
        f"END RequestId: {request_id}\n"
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {math.ceil(duration_ms)} ms\tMemory Size: {memory_mb} MB\t{status}\n"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

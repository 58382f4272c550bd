"""Handlers the executor tests deploy: the whole folder is the function's zip, one Handler each."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from typing import Any

ENV_KEYS = ("GREETING", "AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "LAMBDA_TASK_ROOT", "TMPDIR")
MODULES = ("boto3", "localstack", "pytest", "pydantic")


class PolicyDenied(Exception):
    """Raised by `deny`: its class name is what the caller must see as errorType."""


def describe(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "event": event,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "sys_path": sys.path,
        "env": {key: os.environ.get(key) for key in ENV_KEYS},
        "importable": {name: importlib.util.find_spec(name) is not None for name in MODULES},
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "client_context": context.client_context,
            "identity": context.identity,
        },
    }


def use_layer(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # Provided by the layers the test attaches, not by this package.
    import aob_probe_layer  # type: ignore[import-not-found]
    from aob_probe_layer import only_in_first  # type: ignore[import-not-found]

    return {
        "value": aob_probe_layer.VALUE,
        "only_in_first": only_in_first.PRESENT,
        "file": aob_probe_layer.__file__,
    }


def deny(event: dict[str, Any], context: Any) -> None:
    raise PolicyDenied(f"tool {event['tool']} is not allowed")


def sleep(event: dict[str, Any], context: Any) -> dict[str, Any]:
    print(f"sleeping {event['seconds']} s")
    started = time.time()
    time.sleep(event["seconds"])
    return {"pid": os.getpid(), "started": started, "ended": time.time()}


def allocate(event: dict[str, Any], context: Any) -> dict[str, Any]:
    block = b"\x01" * (event["mb"] * 1024 * 1024)  # written, so resident
    return {"pid": os.getpid(), "allocated_mb": len(block) // (1024 * 1024)}


def shout(event: dict[str, Any], context: Any) -> dict[str, Any]:
    print(f"printed {event['token']}")
    logging.getLogger(__name__).warning("logged %s", event["token"])
    os.system(f"echo child process {event['token']}")  # fd-level output, not sys.stdout
    return {"pid": os.getpid()}


def exit_process(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "status" in event:
        sys.exit(event["status"])
    return {"pid": os.getpid()}

"""The container's Step Functions and Lambda clients, created on first use (never at import)."""

from __future__ import annotations

import functools
from typing import Any

import boto3

from aob.config import get_settings


@functools.cache
def stepfunctions_client() -> Any:
    return boto3.client("stepfunctions", endpoint_url=get_settings().aws_endpoint_url)


@functools.cache
def lambda_client() -> Any:
    return boto3.client("lambda", endpoint_url=get_settings().aws_endpoint_url)

"""Integration tier: LocalStack (host mode, started once per session), Postgres and Redis, for real."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
CTL = ROOT / "infra" / "localstack" / "ctl.py"
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")

pytestmark = pytest.mark.integration


def _healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{ENDPOINT}/_localstack/health", timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def localstack() -> Iterator[str]:
    """The LocalStack endpoint; started here (and stopped at the end) unless already running."""
    os.environ.setdefault("AWS_ENDPOINT_URL", ENDPOINT)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    started = False
    if not _healthy():
        subprocess.run([sys.executable, str(CTL), "up"], check=True)
        started = True
    yield ENDPOINT
    if started:
        subprocess.run([sys.executable, str(CTL), "down"], check=True)


@pytest.fixture(scope="session")
def aws(localstack: str):
    """boto3 clients against LocalStack: aws('lambda'), aws('stepfunctions'), ..."""
    session = boto3.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
    return lambda service: session.client(service, endpoint_url=localstack)

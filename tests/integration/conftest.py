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
from aob.deploy import PolicySigner

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


def deploy_kwargs(root: Path) -> dict:
    """Arguments for aob.deploy.deploy_stack: the test stack, wired to the test database."""
    uv = subprocess.run(
        [str(ROOT / "infra" / "bootstrap.sh"), "uv"], check=True, capture_output=True, text=True
    ).stdout.strip()
    session = boto3.Session(region_name=os.environ["AWS_DEFAULT_REGION"])
    # Another stage (AOB_TEST_STAGE) gives a stack of its own, for test sessions side by side.
    stage = os.environ.get("AOB_TEST_STAGE", "test")
    return {
        "root": root,
        "stack_name": f"aob-{stage}",
        "bucket": "aob-deploy-test",
        "parameters": {
            "Stage": stage,
            "DatabaseUrl": os.environ["AOB_DATABASE_URL"],
            "RedisUrl": os.environ.get("AOB_REDIS_URL", "redis://127.0.0.1:6379/0"),
        },
        "s3": session.client("s3", endpoint_url=ENDPOINT),
        "cfn": session.client("cloudformation", endpoint_url=ENDPOINT),
        "cache_dir": Path(os.environ.get("AOB_CACHE_DIR", Path.home() / ".cache" / "aob")),
        "uv": uv,
        "policy_signer": PolicySigner.local_dev(ROOT / ".state"),
    }


@pytest.fixture(scope="session")
def deployed_stack(localstack: str, migrated_database: str) -> dict[str, str]:
    """The stack from template.yaml, deployed (or updated) once per session; its outputs."""
    from aob.deploy import deploy_stack

    return deploy_stack(**deploy_kwargs(ROOT)).outputs


@pytest.fixture(scope="session")
def model_ready(aws, deployed_stack: dict[str, str], vllm_endpoint: str) -> str:
    """The vLLM endpoint, once the stack's warm pool has probed it.

    The scheduled probe may have run before this session started vLLM and marked the provider
    not ready; probe now, as an operator would after bringing an endpoint up.
    """
    probed = aws("lambda").invoke(FunctionName=deployed_stack["ModelWarmPoolFunctionArn"], Payload=b"{}")
    assert "FunctionError" not in probed, probed["Payload"].read()
    return vllm_endpoint

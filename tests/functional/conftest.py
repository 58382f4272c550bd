"""Functional tier: moto in-process (no LocalStack), with the real Postgres and Redis."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from aob.deploy import PolicySigner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.functional.harness import InProcessStack


@pytest.fixture(scope="session")
def stack(migrated_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessStack]:
    # moto intercepts AWS hostnames only: drop any LocalStack endpoint for this tier.
    saved = {k: os.environ.pop(k) for k in ("AWS_ENDPOINT_URL",) if k in os.environ}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    signer = PolicySigner(Ed25519PrivateKey.generate(), "functional-test")
    with InProcessStack.started(tmp_path_factory.mktemp("functions"), signer) as started:
        yield started
    os.environ.update(saved)

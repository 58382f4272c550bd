"""Preflight against the real Postgres and Redis, and against closed ports (port 1 refuses)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from aob.config import Settings
from aob.errors import ConfigurationError
from aob.preflight import CheckResult, run_preflight

pytestmark = pytest.mark.integration

CLOSED_POSTGRES = "postgresql://app:s3cret@127.0.0.1:1/aob"
CLOSED_REDIS = "redis://:s3cret@127.0.0.1:1/0"
CLOSED_ENDPOINT = "http://127.0.0.1:1"


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def _preflight_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aob.preflight", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_running_services_are_ok(database_url: str) -> None:
    results = _by_name(run_preflight(("postgres", "redis"), settings=Settings(aws_endpoint_url=None)))

    assert results["postgres"].ok and results["postgres"].required
    assert results["postgres"].detail.startswith("PostgreSQL ")
    assert results["redis"].ok and results["redis"].required
    assert results["localstack"].status == "skipped" and not results["localstack"].required


def test_closed_redis_port_is_unreachable_with_a_hint() -> None:
    results = _by_name(run_preflight(settings=Settings(redis_url=CLOSED_REDIS)))

    redis = results["redis"]
    assert redis.status == "unreachable" and redis.required
    assert redis.url == "redis://:***@127.0.0.1:1/0"
    assert "redis-server --daemonize yes" in redis.hint and "AOB_REDIS_URL" in redis.hint
    assert results["postgres"].ok


def test_closed_postgres_port_is_unreachable_with_a_hint() -> None:
    postgres = _by_name(run_preflight(settings=Settings(database_url=CLOSED_POSTGRES)))["postgres"]

    assert postgres.status == "unreachable"
    assert postgres.url == "postgresql://app:***@127.0.0.1:1/aob"
    assert "pg_ctlcluster" in postgres.hint and "AOB_DATABASE_URL" in postgres.hint
    assert "s3cret" not in f"{postgres}"


def test_localstack_is_checked_only_when_local_or_required() -> None:
    def localstack(endpoint: str | None, require: tuple[str, ...] = ()) -> CheckResult:
        settings = Settings(aws_endpoint_url=endpoint)
        return _by_name(run_preflight(require, settings=settings))["localstack"]

    assert localstack(None).status == "skipped"
    assert localstack("https://sqs.us-east-1.amazonaws.com").status == "skipped"
    down = localstack(CLOSED_ENDPOINT, ("localstack",))
    assert down.status == "unreachable" and down.required
    assert "make up" in down.hint


def test_unknown_check_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="choose from postgres, redis, localstack"):
        run_preflight(("postgres", "kafka"))


def test_cli_passes_when_required_services_answer(database_url: str) -> None:
    done = _preflight_cli("--require", "postgres,redis")

    assert done.returncode == 0, done.stderr
    assert "postgres" in done.stdout and "ok" in done.stdout


def test_cli_fails_naming_the_service_and_masking_the_password() -> None:
    done = _preflight_cli(AOB_REDIS_URL=CLOSED_REDIS, AOB_DATABASE_URL=CLOSED_POSTGRES)

    assert done.returncode == 1
    assert "redis-server --daemonize yes" in done.stdout
    assert "pg_ctlcluster" in done.stdout
    assert "required but not answering: postgres, redis" in done.stderr
    assert "s3cret" not in done.stdout + done.stderr


def test_cli_requires_localstack_on_request() -> None:
    done = _preflight_cli("--require", "localstack", AWS_ENDPOINT_URL=CLOSED_ENDPOINT)

    assert done.returncode == 1
    assert "make up" in done.stdout
    assert "localstack" in done.stderr

"""Is everything AOB talks to running? `python -m aob.preflight [--require postgres,redis,localstack]`.

Checks Postgres (connect, `SELECT 1`), Redis (PING) and, when AWS_ENDPOINT_URL points at this
machine, LocalStack (its health endpoint). Each result names the URL, with any password masked,
and says how to start the service when it does not answer. The CLI exits 1 when a required
service is down.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import psycopg
import redis

from aob.config import MASK, Settings, get_settings, mask_url
from aob.db import connect
from aob.errors import ConfigurationError, ServiceUnavailable

CHECKS = ("postgres", "redis", "localstack")
DEFAULT_REQUIRE = ("postgres", "redis")
DEFAULT_TIMEOUT_S = 2.0
LOCALSTACK_URL = "http://127.0.0.1:4566"
HEALTH_PATH = "/_localstack/health"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "localstack", "localhost.localstack.cloud"})

LOCALSTACK_HINT = (
    "start it with `make up` (or `python infra/localstack/ctl.py up`), or set AWS_ENDPOINT_URL to "
    "where it runs; unset AWS_ENDPOINT_URL to use real AWS"
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Literal["ok", "unreachable", "skipped"]
    url: str  # password masked
    detail: str
    hint: str = ""
    required: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _scrub(text: str, url: str) -> str:
    """`text` without the password of `url`, should a driver quote it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return _one_line(text.replace(password, MASK) if password else text)


def _postgres_hint() -> str:
    # Name the installed cluster version where there is one (Debian/Ubuntu layout).
    versions = sorted((p.name for p in Path("/etc/postgresql").glob("*") if p.name.isdigit()), key=int)
    version = versions[-1] if versions else "<version>"
    return (
        f"start it with `sudo pg_ctlcluster {version} main start` (`pg_lsclusters` lists clusters) or "
        "`docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:16`; if it runs but "
        "refuses the login, fix user, password or database in AOB_DATABASE_URL"
    )


def _redis_hint(url: str) -> str:
    try:
        port = urlsplit(url).port or 6379
    except ValueError:
        port = 6379
    return (
        f"start it with `redis-server --daemonize yes --port {port}` or "
        f"`docker run -d -p {port}:6379 redis:7`, or set AOB_REDIS_URL to a server that runs"
    )


def check_postgres(url: str, timeout_s: float = DEFAULT_TIMEOUT_S, required: bool = False) -> CheckResult:
    def down(reason: str, hint: str) -> CheckResult:
        return CheckResult("postgres", "unreachable", mask_url(url), _scrub(reason, url), hint, required)

    try:
        with connect(url, timeout_s=timeout_s) as conn:
            conn.execute("SELECT 1")
            version = conn.info.server_version
    except ConfigurationError as exc:
        return down(str(exc), "set AOB_DATABASE_URL to a valid postgresql:// URL")
    except ServiceUnavailable as exc:
        # connect() names the URL itself; the driver's reason (its cause) is what to show.
        return down(str(exc.__cause__ or exc), _postgres_hint())
    except psycopg.Error as exc:
        return down(str(exc), _postgres_hint())
    detail = f"PostgreSQL {version // 10000}.{version % 10000}"
    return CheckResult("postgres", "ok", mask_url(url), detail, required=required)


def check_redis(url: str, timeout_s: float = DEFAULT_TIMEOUT_S, required: bool = False) -> CheckResult:
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s, decode_responses=True
        )
        with client:
            client.ping()
            version = client.info("server").get("redis_version", "?")
    except (redis.RedisError, ValueError) as exc:
        detail = _scrub(str(exc), url)
        return CheckResult("redis", "unreachable", mask_url(url), detail, _redis_hint(url), required)
    return CheckResult("redis", "ok", mask_url(url), f"Redis {version}", required=required)


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in _LOCAL_HOSTS or host.endswith(".localhost.localstack.cloud")


def check_localstack(
    endpoint: str | None, timeout_s: float = DEFAULT_TIMEOUT_S, required: bool = False
) -> CheckResult:
    """LocalStack's health; skipped for real AWS unless required (then the default local URL)."""
    if endpoint is None and not required:
        return CheckResult("localstack", "skipped", "", "AWS_ENDPOINT_URL not set: using real AWS")
    endpoint = endpoint or LOCALSTACK_URL
    url = mask_url(endpoint)
    if not _is_local(endpoint) and not required:
        return CheckResult("localstack", "skipped", url, "AWS_ENDPOINT_URL is not local")
    try:
        with urllib.request.urlopen(f"{endpoint}{HEALTH_PATH}", timeout=timeout_s) as response:
            health = json.load(response)
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors; bad JSON a ValueError
        return CheckResult(
            "localstack", "unreachable", url, _scrub(str(exc), endpoint), LOCALSTACK_HINT, required
        )
    return CheckResult("localstack", "ok", url, f"LocalStack {health.get('version', '?')}", required=required)


def run_preflight(
    require: Iterable[str] = DEFAULT_REQUIRE,
    *,
    settings: Settings | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[CheckResult]:
    """Check every service (default settings: get_settings()); `require` marks the ones that must answer."""
    required = set(require)
    if unknown := required - set(CHECKS):
        raise ConfigurationError(
            f"unknown preflight check(s) {', '.join(sorted(unknown))}; choose from {', '.join(CHECKS)}"
        )
    settings = settings or get_settings()
    return [
        check_postgres(settings.database_url, timeout_s, "postgres" in required),
        check_redis(settings.redis_url, timeout_s, "redis" in required),
        check_localstack(settings.aws_endpoint_url, timeout_s, "localstack" in required),
    ]


def format_results(results: Sequence[CheckResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"{r.name:<11} {r.status:<12} {r.url}{'  ' if r.url else ''}({r.detail})")
        if r.hint and not r.ok:
            lines.append(f"{'':<24} hint: {r.hint}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print each check; exit 1 if a required service does not answer."""
    parser = argparse.ArgumentParser(prog="python -m aob.preflight", description=main.__doc__)
    parser.add_argument(
        "--require",
        default=",".join(DEFAULT_REQUIRE),
        help=f"comma-separated services that must answer, from {','.join(CHECKS)} (default: %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per check")
    args = parser.parse_args(argv)
    require = [name.strip() for name in args.require.split(",") if name.strip()]
    try:
        results = run_preflight(require, timeout_s=args.timeout)
    except ConfigurationError as exc:
        print(f"preflight: error: {exc}", file=sys.stderr)
        return 2
    print(format_results(results))
    if down := [r.name for r in results if r.required and not r.ok]:
        print(
            f"preflight: required but not answering: {', '.join(down)}; see the hints above", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

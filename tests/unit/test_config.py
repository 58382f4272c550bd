"""Settings come from AOB_* variables (and AWS_ENDPOINT_URL), and never show a password."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from aob.config import Settings, get_settings, mask_url
from aob.errors import AobError, ConfigurationError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No AOB_* or AWS_ENDPOINT_URL from the developer's shell, and no cached settings."""
    for name in list(os.environ):
        if name.startswith("AOB_") or name == "AWS_ENDPOINT_URL":
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_defaults_reach_local_services_and_real_aws() -> None:
    settings = Settings()

    assert settings.database_url == "postgresql://postgres@127.0.0.1:5432/postgres"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.aws_endpoint_url is None
    assert (settings.db_pool_min, settings.db_pool_max) == (0, 4)
    assert settings.db_connect_timeout_s > 0


def test_values_come_from_prefixed_variables(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AOB_DATABASE_URL", "postgresql://app@db.internal:6432/aob")
    clean_env.setenv("AOB_REDIS_URL", "rediss://cache.internal:6380/2")
    clean_env.setenv("AOB_DB_POOL_MAX", "10")
    clean_env.setenv("AOB_DB_CONNECT_TIMEOUT_S", "1.5")
    clean_env.setenv("DATABASE_URL", "postgresql://unprefixed@elsewhere/db")

    settings = Settings()

    assert settings.database_url == "postgresql://app@db.internal:6432/aob"
    assert settings.redis_url == "rediss://cache.internal:6380/2"
    assert settings.db_pool_max == 10
    assert settings.db_connect_timeout_s == 1.5


def test_endpoint_is_the_standard_aws_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566/")
    clean_env.setenv("AOB_AWS_ENDPOINT_URL", "http://ignored:1")

    assert Settings().aws_endpoint_url == "http://127.0.0.1:4566"


def test_empty_endpoint_means_real_aws(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AWS_ENDPOINT_URL", "")

    assert Settings().aws_endpoint_url is None


def test_settings_are_read_once_until_the_cache_is_cleared(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AOB_REDIS_URL", "redis://first:6379/0")
    first = get_settings()
    clean_env.setenv("AOB_REDIS_URL", "redis://second:6379/0")

    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().redis_url == "redis://second:6379/0"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AOB_DATABASE_URL", "mysql://app:s3cret@db/aob"),
        ("AOB_REDIS_URL", "http://cache:6379"),
        ("AWS_ENDPOINT_URL", "localhost:4566"),
        ("AOB_DB_POOL_MAX", "0"),
        ("AOB_DB_POOL_MIN", "9"),
        ("AOB_DB_CONNECT_TIMEOUT_S", "soon"),
    ],
)
def test_bad_value_names_the_variable(clean_env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    clean_env.setenv(variable, value)

    with pytest.raises(ConfigurationError, match=variable) as raised:
        get_settings()

    assert isinstance(raised.value, AobError)
    assert "s3cret" not in str(raised.value)
    assert "s3cret" not in str(raised.value.__cause__)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://app:s3cret@db:5432/aob", "postgresql://app:***@db:5432/aob"),
        ("postgresql://app@db:5432/aob", "postgresql://app@db:5432/aob"),
        ("postgresql://db/aob", "postgresql://db/aob"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://default:s3cret@cache:6380", "rediss://default:***@cache:6380"),
        ("postgresql://app:p@ss:w0rd@db/aob", "postgresql://app:***@db/aob"),
        (
            "postgresql://db/aob?sslmode=require&password=s3cret",
            "postgresql://db/aob?sslmode=require&password=***",
        ),
        ("host=db user=app password=s3cret dbname=aob", "host=db user=app password=*** dbname=aob"),
        ("host=db password='s3 cret' dbname=aob", "host=db password=*** dbname=aob"),
        ("postgresql://app:s3cret@[::1/aob", "***"),
    ],
)
def test_mask_url_hides_passwords_and_keeps_the_rest(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_settings_repr_masks_passwords(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("AOB_DATABASE_URL", "postgresql://app:s3cret@db/aob")
    clean_env.setenv("AOB_REDIS_URL", "redis://:s3cret@cache:6379/0")

    settings = Settings()

    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings)
    assert "postgresql://app:***@db/aob" in repr(settings)
    assert settings.database_url == "postgresql://app:s3cret@db/aob"  # the value itself is intact

"""The container's PolicyService, built from AOB_POLICY_* settings (no database needed to build it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aob.errors import BundleRejected, ConfigurationError
from aob.policy import get_policy_service, policy_files, public_key_b64, sign_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

POLICIES = Path(__file__).resolve().parents[2] / "policies"
KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    bundle = tmp_path / "active.tar.gz"
    bundle.write_bytes(sign_bundle(policy_files(POLICIES), KEY, "ops"))
    monkeypatch.setenv("AOB_POLICY_BUNDLE", str(bundle))
    monkeypatch.setenv("AOB_POLICY_TRUSTED_KEYS", json.dumps({"ops": public_key_b64(KEY.public_key())}))
    monkeypatch.delenv("AOB_POLICY_CANDIDATE_BUNDLE", raising=False)
    get_policy_service.cache_clear()
    yield monkeypatch
    get_policy_service.cache_clear()


def test_the_service_is_built_once_per_container(env: pytest.MonkeyPatch) -> None:
    assert get_policy_service() is get_policy_service()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AOB_POLICY_TRUSTED_KEYS", "{not json", "AOB_POLICY_TRUSTED_KEYS must be JSON"),
        ("AOB_POLICY_TRUSTED_KEYS", '{"ops": "c2hvcnQ="}', "trusted key 'ops'"),
        ("AOB_POLICY_CACHE_SIZE", "-1", "AOB_POLICY_CACHE_SIZE"),
        ("AOB_POLICY_BUNDLE", "s3://bucket/bundle.tar.gz", "only local bundle paths"),
        ("AOB_POLICY_BUNDLE", "", "AOB_POLICY_BUNDLE is not set"),
    ],
)
def test_bad_settings_say_which_variable(
    env: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=message):
        get_policy_service()


def test_an_untrusted_active_bundle_stops_the_container(env: pytest.MonkeyPatch) -> None:
    env.setenv(
        "AOB_POLICY_TRUSTED_KEYS",
        json.dumps({"ops": public_key_b64(Ed25519PrivateKey.generate().public_key())}),
    )
    with pytest.raises(BundleRejected):
        get_policy_service()


def test_a_rejected_candidate_only_means_no_shadow(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    candidate = tmp_path / "candidate.tar.gz"
    candidate.write_bytes(sign_bundle(policy_files(POLICIES), Ed25519PrivateKey.generate(), "ops"))
    env.setenv("AOB_POLICY_CANDIDATE_BUNDLE", str(candidate))

    active, shadow = get_policy_service()._store.engines()

    assert active.digest.startswith("sha256:") and shadow is None


def test_a_relative_bundle_path_is_read_from_the_function_code(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "policy_bundle.tar.gz").write_bytes(sign_bundle(policy_files(POLICIES), KEY, "ops"))
    env.setenv("LAMBDA_TASK_ROOT", str(tmp_path / "task"))
    env.setenv("AOB_POLICY_BUNDLE", "policy_bundle.tar.gz")

    assert get_policy_service()._store.engines()[0].digest.startswith("sha256:")

"""The bundle store: a rejected bundle never replaces the last good one."""

from __future__ import annotations

from pathlib import Path

import pytest
from aob.errors import BundleRejected, ConfigurationError
from aob.policy import PolicyBundle, PolicyBundleStore, RegoPolicyEngine, sign_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY = Ed25519PrivateKey.generate()
TRUSTED = {"ops": KEY.public_key()}


def bundle(allow: bool) -> bytes:
    module = (
        f'package aob\n\ndecision := {{"allow": {str(allow).lower()}, "reasons": [], "obligations": {{}}}}\n'
    )
    return sign_bundle({"decision.rego": module.encode()}, KEY, "ops")


ALLOW, DENY = bundle(True), bundle(False)


class CountingFactory:
    def __init__(self) -> None:
        self.compiled: list[str] = []

    def __call__(self, verified: PolicyBundle) -> RegoPolicyEngine:
        self.compiled.append(verified.digest)
        return RegoPolicyEngine(verified)


def test_nothing_is_enforced_before_a_bundle_loads() -> None:
    with pytest.raises(ConfigurationError, match="AOB_POLICY_BUNDLE"):
        PolicyBundleStore(TRUSTED).engines()


def test_a_rejected_bundle_keeps_the_last_good_one_active() -> None:
    store = PolicyBundleStore(TRUSTED)
    good = store.load(ALLOW)

    with pytest.raises(BundleRejected):
        store.load(sign_bundle({"decision.rego": b"package aob\n"}, Ed25519PrivateKey.generate(), "ops"))
    with pytest.raises(BundleRejected):
        store.load(sign_bundle({"decision.rego": b"package aob\n\ndecision := {\n"}, KEY, "ops"))

    assert store.engines() == (good, None)


def test_a_new_bundle_replaces_the_active_one_and_loads_from_a_file(tmp_path: Path) -> None:
    store = PolicyBundleStore(TRUSTED)
    store.load(ALLOW)
    (tmp_path / "deny.tar.gz").write_bytes(DENY)

    replaced = store.load(tmp_path / "deny.tar.gz")

    assert store.engines()[0] is replaced
    assert replaced.evaluate({}).allow is False


def test_a_missing_bundle_file_is_a_rejection(tmp_path: Path) -> None:
    with pytest.raises(BundleRejected, match="cannot read policy bundle"):
        PolicyBundleStore(TRUSTED).load(tmp_path / "absent.tar.gz")


def test_a_candidate_sits_beside_the_active_bundle_until_cleared() -> None:
    store = PolicyBundleStore(TRUSTED)
    active = store.load(ALLOW)
    candidate = store.load(DENY, "candidate")

    assert store.engines() == (active, candidate)
    store.clear_candidate()
    assert store.engines() == (active, None)


def test_a_bundle_already_held_is_not_compiled_again() -> None:
    factory = CountingFactory()
    store = PolicyBundleStore(TRUSTED, engine_factory=factory)

    first = store.load(ALLOW)
    again = store.load(ALLOW, "candidate")
    store.load(DENY)

    assert again is first
    assert len(factory.compiled) == 2

"""The container's policy bundles: the active one, enforced, and an optional candidate in shadow."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from aob.errors import BundleRejected, ConfigurationError
from aob.policy._bundle import PolicyBundle, read_bundle, read_bundle_file
from aob.policy._engine import PolicyEngine, RegoPolicyEngine
from aob.policy._keys import TrustedKeys

logger = logging.getLogger(__name__)

type Role = Literal["active", "candidate"]
type EngineFactory = Callable[[PolicyBundle], PolicyEngine]


class PolicyBundleStore:
    """Verifies, compiles and holds bundles; a bundle that fails either step is never swapped in.

    `load` builds the new engine completely before one assignment publishes it, so readers see the
    old pair or the new pair, never a half-loaded one, and a rejected bundle leaves the last good
    one in place. A bundle already held (same digest) is not compiled again.
    """

    def __init__(self, trusted: TrustedKeys, engine_factory: EngineFactory = RegoPolicyEngine) -> None:
        self._trusted = dict(trusted)
        self._engine_factory = engine_factory
        self._engines: tuple[PolicyEngine | None, PolicyEngine | None] = (None, None)
        self._lock = threading.Lock()

    def load(self, bundle: bytes | Path, role: Role = "active") -> PolicyEngine:
        """Verify and compile a bundle (bytes or a file) and make it the `role` bundle.

        Raises BundleRejected, keeping the bundles held so far, when it does not verify or compile.
        """
        try:
            verified = (
                read_bundle_file(bundle, self._trusted)
                if isinstance(bundle, Path)
                else read_bundle(bundle, self._trusted)
            )
            engine = self._engine_for(verified)
        except BundleRejected as exc:
            kept = self._engines[0 if role == "active" else 1]
            logger.error(
                "policy bundle rejected as %s; keeping %s: %s", role, kept.digest if kept else "none", exc
            )
            raise
        with self._lock:
            active, candidate = self._engines
            self._engines = (engine, candidate) if role == "active" else (active, engine)
        logger.info("policy bundle %s (key %s) is now %s", verified.digest, verified.key_id, role)
        return engine

    def clear_candidate(self) -> None:
        """Stop shadow evaluation."""
        with self._lock:
            self._engines = (self._engines[0], None)

    def engines(self) -> tuple[PolicyEngine, PolicyEngine | None]:
        """The active engine and the candidate (or None), read together."""
        active, candidate = self._engines
        if active is None:
            raise ConfigurationError("no policy bundle is loaded: set AOB_POLICY_BUNDLE to a signed bundle")
        return active, candidate

    def _engine_for(self, bundle: PolicyBundle) -> PolicyEngine:
        for held in self._engines:
            if held is not None and held.digest == bundle.digest:
                return held
        return self._engine_factory(bundle)

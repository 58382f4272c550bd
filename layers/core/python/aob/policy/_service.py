"""PolicyService: one policy check = tenant lookup, active (+ shadow) evaluation, one record."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aob.errors import PolicyEvaluationFailed
from aob.policy._engine import PolicyEngine
from aob.policy._models import PolicyDecision, PolicyInput, PolicyVerdict
from aob.policy._record import DecisionRecorder
from aob.policy._store import PolicyBundleStore

logger = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 4096
# What of a request the policies see (with the tenant's plan and status): the cache key.
_EVALUATED = {"tenant_id", "principal", "action"}


class TenantInfo(Protocol):
    """What policies need of a tenant (`aob.tenants.Tenant` is one)."""

    @property
    def plan(self) -> str: ...

    @property
    def status(self) -> str: ...


type TenantLookup = Callable[[str], TenantInfo]


def rego_input(request: PolicyInput, tenant: TenantInfo) -> dict[str, Any]:
    """The document policies see as `input`.

    Run and step ids stay out: no policy depends on them, and leaving them out lets repeated
    checks of the same action share one cached evaluation.
    """
    return {
        "tenant": {"id": request.tenant_id, "plan": tenant.plan, "status": tenant.status},
        "principal": request.principal.model_dump(mode="json"),
        "action": request.action.model_dump(mode="json", exclude_none=True),
    }


@dataclass(frozen=True)
class _Evaluated:
    allow: bool
    reasons: tuple[str, ...]
    obligations_json: str  # decoded afresh per decision: a caller cannot alter the cached one
    input_sha256: str  # of the canonical (sorted, compact) JSON of the Rego input


class _Lru:
    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[str, str], _Evaluated] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> _Evaluated | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str], entry: _Evaluated) -> None:
        with self._lock:
            self._entries[key] = entry
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)


class PolicyService:
    """Checks a step against the active bundle, shadows it with the candidate, records both.

    Only the active verdict is enforced. Evaluations are cached per (bundle digest, input) in an
    LRU of `cache_size` entries; every check still gets its own decision id and record.
    """

    def __init__(
        self,
        store: PolicyBundleStore,
        recorder: DecisionRecorder,
        tenants: TenantLookup,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        new_id: Callable[[], uuid.UUID] = uuid.uuid4,
    ) -> None:
        self._store = store
        self._recorder = recorder
        self._tenants = tenants
        self._new_id = new_id
        self._cache = _Lru(cache_size)

    def check(self, request: PolicyInput) -> PolicyDecision:
        """Decide and record; UnknownTenant, PolicyEvaluationFailed or ServiceUnavailable otherwise."""
        decision, input_sha256 = self.decide(request)
        self._recorder.record(request, input_sha256, decision)
        return decision

    def decide(self, request: PolicyInput) -> tuple[PolicyDecision, str]:
        """The decision (not recorded) and the sha256 of the canonical Rego input."""
        tenant = self._tenants(request.tenant_id)
        key = f"{tenant.plan}\n{tenant.status}\n{request.model_dump_json(include=_EVALUATED)}"
        active, candidate = self._store.engines()
        enforced = self._evaluate(active, key, request, tenant)
        shadow = self._shadow(candidate, key, request, tenant) if candidate is not None else None
        obligations = json.loads(enforced.obligations_json)
        # model_construct: every value is already validated (the request, the engine's decision).
        decision = PolicyDecision.model_construct(
            decision_id=self._new_id(),
            bundle_digest=active.digest,
            allow=enforced.allow,
            reasons=list(enforced.reasons),
            obligations=obligations,
            tenant_id=request.tenant_id,
            run_id=request.run_id,
            step_id=request.step_id,
            shadow=shadow,
            shadow_disagrees=shadow is not None
            and (shadow.allow, shadow.obligations) != (enforced.allow, obligations),
        )
        if decision.shadow_disagrees:
            logger.info("candidate bundle disagrees with the active one", extra=_ids(request))
        return decision, enforced.input_sha256

    def _evaluate(
        self, engine: PolicyEngine, key: str, request: PolicyInput, tenant: TenantInfo
    ) -> _Evaluated:
        cached = self._cache.get((engine.digest, key))
        if cached is not None:
            return cached
        document = rego_input(request, tenant)
        evaluation = engine.evaluate(document)
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        entry = _Evaluated(
            allow=evaluation.allow,
            reasons=evaluation.reasons,
            obligations_json=json.dumps(evaluation.obligations),
            input_sha256=hashlib.sha256(canonical.encode()).hexdigest(),
        )
        self._cache.put((engine.digest, key), entry)
        return entry

    def _shadow(
        self, engine: PolicyEngine, key: str, request: PolicyInput, tenant: TenantInfo
    ) -> PolicyVerdict | None:
        # A broken candidate must never break enforcement: log it and carry on without a shadow.
        try:
            evaluated = self._evaluate(engine, key, request, tenant)
        except PolicyEvaluationFailed as exc:
            logger.warning("candidate bundle %s failed: %s", engine.digest, exc, extra=_ids(request))
            return None
        return PolicyVerdict.model_construct(
            decision_id=self._new_id(),
            bundle_digest=engine.digest,
            allow=evaluated.allow,
            reasons=list(evaluated.reasons),
            obligations=json.loads(evaluated.obligations_json),
        )


def _ids(request: PolicyInput) -> dict[str, Any]:
    return {"tenant_id": request.tenant_id, "run_id": request.run_id, "step_id": request.step_id}

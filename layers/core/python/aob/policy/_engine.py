"""The PolicyEngine port and its Rego adapter (rego-cpp, in-process)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError
from regopy import RegoError  # type: ignore[import-untyped]

from aob.errors import BundleRejected, PolicyEvaluationFailed
from aob.policy import _rego
from aob.policy._bundle import PolicyBundle

ENTRYPOINT = "aob/decision"  # data.aob.decision
# Evaluated once when a bundle loads: a bundle whose decision is undefined or malformed for an
# ordinary input is refused there, not at the first real request.
PROBE_INPUT = {
    "tenant": {"id": "probe", "plan": "free", "status": "active"},
    "principal": {"subject": "probe", "roles": []},
    "action": {"kind": "model", "tier": "small", "data_classes": []},
}


@dataclass(frozen=True)
class Evaluation:
    """A bundle's answer, before it gets a decision id; immutable, so it can be cached."""

    allow: bool
    reasons: tuple[str, ...]  # sorted
    obligations: Mapping[str, JsonValue]


class PolicyEngine(Protocol):
    """Evaluates one verified bundle."""

    @property
    def digest(self) -> str: ...

    def evaluate(self, document: Mapping[str, Any]) -> Evaluation:
        """The decision for an input document; PolicyEvaluationFailed when there is none."""
        ...


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    allow: bool
    reasons: list[str]
    obligations: dict[str, JsonValue]


class RegoPolicyEngine:
    """A bundle's modules and data compiled once (at construction) and evaluated in-process."""

    def __init__(self, bundle: PolicyBundle) -> None:
        self._digest = bundle.digest
        try:
            rego = _rego.interpreter(bundle.modules, bundle.data_documents)
            self._queries = _rego.CompiledQueries(rego, [ENTRYPOINT])
            self.evaluate(PROBE_INPUT)
        except (_rego.CompileError, UnicodeDecodeError, PolicyEvaluationFailed) as exc:
            raise BundleRejected(
                f"bundle {bundle.digest} does not compile to a policy decision: {exc}"
            ) from exc

    @property
    def digest(self) -> str:
        return self._digest

    def evaluate(self, document: Mapping[str, Any]) -> Evaluation:
        try:
            value = self._queries.evaluate(ENTRYPOINT, document)
        except RegoError as exc:
            raise PolicyEvaluationFailed(f"policy bundle {self._digest} failed to evaluate: {exc}") from exc
        if value is _rego.UNDEFINED:
            raise PolicyEvaluationFailed(
                f"policy bundle {self._digest} defines no data.aob.decision for this input"
            )
        try:
            decision = _Decision.model_validate(value)
        except ValidationError as exc:
            raise PolicyEvaluationFailed(
                f"policy bundle {self._digest} returned a malformed data.aob.decision "
                f"(want allow: bool, reasons: [string], obligations: object): {exc}"
            ) from exc
        return Evaluation(decision.allow, tuple(sorted(decision.reasons)), decision.obligations)

"""ModelGateway: one governed model call = size check, policy gate, reserve, route with fallback, settle.

Order matters: what can be refused without side effects (unknown tier, oversized prompt) is
refused before a policy decision is made or tokens are reserved; once reserved, a failed call
settles the reservation with zero usage, so no reservation is left open.

The policy decision is taken before any provider is called. An allowed decision's record is
written to Postgres (once tokens are reserved) while the model works, and the answer is only
returned once the record is stored: if it cannot be, the (already settled) call fails with
ServiceUnavailable rather than return an unaudited answer. A refusal is recorded before it is raised.

Fused mode: a request with `record` also gets its step's DecisionRecord written (aob.recorder),
after the call was answered and settled, or before a denial is raised.

Explicit mode: a request with `governance` was checked (and its decision recorded) and reserved by
its state machine, which settles it too. The gateway loads that decision instead of deciding again
(aob.policy.governing_decision: GovernanceMismatch unless made for this call), enforces it as
above, and neither records a decision nor reserves or settles tokens.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from aob.errors import ConfigurationError, PolicyDenied, PolicyEvaluationFailed, PromptTooLarge
from aob.llm._config import ModelRoutes, TierConfig
from aob.llm._models import ChatRequest, ChatResult, Usage
from aob.llm._provider import ModelProvider
from aob.llm._router import Routed, Router
from aob.llm._state import GatewayState
from aob.metering.models import Reservation, ReserveRequest, Settlement, SettleRequest
from aob.policy import (
    DecisionReader,
    DecisionRecorder,
    ModelAction,
    PolicyDecision,
    PolicyInput,
    PostgresDecisionRecorder,
    governing_decision,
)
from aob.recorder import Node, RecordStepRequest, StepPolicy, StepRecorder

logger = logging.getLogger(__name__)

CAPABILITY = "model_gateway"  # what metering charges model calls to
CHARS_PER_TOKEN = 3  # the reservation's estimate of prompt tokens: on the generous side


class PolicyGate(Protocol):
    """What the gateway needs of aob.policy.PolicyService: a decision, recorded separately."""

    def decide(self, request: PolicyInput) -> tuple[PolicyDecision, str]: ...


class TokenMeter(Protocol):
    """What the gateway needs of aob.metering.Metering."""

    def reserve(self, request: ReserveRequest) -> Reservation: ...

    def settle(self, request: SettleRequest) -> Settlement: ...


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


class ModelGateway:
    """The model gateway as a service object: the Lambda task and fused steps call `complete`."""

    def __init__(
        self,
        routes: ModelRoutes,
        providers: Mapping[str, ModelProvider],
        state: GatewayState,
        policy: PolicyGate,
        recorder: DecisionRecorder,
        metering: TokenMeter,
        *,
        default_max_tokens: int = 512,
        max_prompt_chars: int = 100_000,
        clock: Callable[[], float] = time.time,
        step_recorder: StepRecorder | None = None,
        decisions: DecisionReader | None = None,
    ) -> None:
        self._decisions = decisions or PostgresDecisionRecorder()  # connects on first use
        self._clock = clock
        self._step_recorder = step_recorder
        self._routes = routes
        self._router = Router(routes, providers, state, clock=clock)
        self._policy = policy
        self._recorder = recorder
        self._metering = metering
        self._default_max_tokens = default_max_tokens
        self._max_prompt_chars = max_prompt_chars
        self._background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="aob-llm-record")

    def complete(self, request: ChatRequest) -> ChatResult:
        """Governed chat completion.

        Raises UnknownModelTier, PromptTooLarge, PolicyDenied, PolicyEvaluationFailed, QuotaExceeded,
        ModelRequestRejected (don't retry), ModelUnavailable or ServiceUnavailable (transient: retry).
        """
        tier = self._routes.tier(request.tier)
        prompt = request.prompt_body()
        prompt_chars = self._checked_size(request, tier, prompt)
        ids = {"tenant_id": request.tenant_id, "run_id": request.run_id, "step_id": request.step_id}
        decision, record = self._allowed(request)
        max_tokens = request.max_tokens or self._default_max_tokens
        estimate = math.ceil(prompt_chars / CHARS_PER_TOKEN) + max_tokens
        try:
            reservation_id, reservation = self._reserve(request, estimate)
        except BaseException:
            self._record_quietly(record)
            raise
        recorded = self._background.submit(record)  # written while the model works
        started = self._now()
        body: dict[str, Any] = {**prompt, "max_tokens": max_tokens}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.extra_body:
            body["extra_body"] = request.extra_body
        try:
            routed = self._router.call(request.tier, tier.targets, body, ids)
        except BaseException:
            self._release(request, reservation)
            self._record_quietly(recorded.result)
            raise
        result = self._result(request, routed, decision, reservation_id)
        if reservation is not None:
            self._metering.settle(
                SettleRequest(
                    tenant_id=request.tenant_id,
                    reservation_id=reservation.reservation_id,
                    input_tokens=result.usage.prompt_tokens,
                    output_tokens=result.usage.completion_tokens,
                    run_id=request.run_id,
                    step_id=request.step_id,
                    model=result.model[:200],
                )
            )
        try:
            self._record_step(request, "succeeded", decision, result, (started, self._now()))
        finally:
            recorded.result()  # no answer leaves without its decision record
        logger.info(
            "model call answered",
            extra=ids
            | result.model_dump(
                mode="json", include={"tier", "provider", "model", "model_version", "latency_ms"}
            )
            | {"usage": result.usage.model_dump(), "decision_id": str(decision.decision_id)}
            | {"reservation_id": reservation_id, "attempts": len(result.attempts)},
        )
        return result

    def _checked_size(self, request: ChatRequest, tier: TierConfig, prompt: dict[str, Any]) -> int:
        prompt_chars = len(json.dumps(prompt, ensure_ascii=False, separators=(",", ":")))
        limit = tier.max_prompt_chars or self._max_prompt_chars
        if prompt_chars > limit:
            raise PromptTooLarge(
                f"messages: the prompt (messages and tools as JSON) has {prompt_chars} characters, over the "
                f"limit of {limit} for tier {request.tier}; shorten it or use a tier with a larger limit"
            )
        return prompt_chars

    def _reserve(self, request: ChatRequest, estimate: int) -> tuple[str, Reservation | None]:
        """The call's reservation id, and the reservation when the gateway made it (and so settles it)."""
        if request.governance is not None:  # explicit mode: the state machine reserved and settles
            return request.governance.reservation_id, None
        reservation = self._metering.reserve(
            ReserveRequest(tenant_id=request.tenant_id, capability=CAPABILITY, estimate_tokens=estimate)
        )
        return reservation.reservation_id, reservation

    def _decided(
        self, request: ChatRequest, policy_input: PolicyInput
    ) -> tuple[PolicyDecision, Callable[[], None]]:
        """A new decision and what records it, or explicit mode's, verified and already recorded."""
        if request.governance is not None:
            return governing_decision(self._decisions, policy_input, request.governance), lambda: None
        decision, input_sha256 = self._policy.decide(policy_input)
        return decision, functools.partial(self._recorder.record, policy_input, input_sha256, decision)

    def _allowed(self, request: ChatRequest) -> tuple[PolicyDecision, Callable[[], None]]:
        """The decision and what records it; a refusal is recorded, then raised."""
        policy_input = PolicyInput(
            tenant_id=request.tenant_id,
            principal=request.principal,
            action=ModelAction(kind="model", tier=request.tier, data_classes=request.data_classes),
            run_id=request.run_id,
            step_id=request.step_id,
        )
        decision, record = self._decided(request, policy_input)
        if not decision.allow:
            record()
            self._record_step(request, "denied", decision)
            raise PolicyDenied(
                f"policy denied model tier {request.tier} for tenant {request.tenant_id}: "
                f"{'; '.join(decision.reasons)} (decision {decision.decision_id})",
                decision_id=str(decision.decision_id),
                reasons=list(decision.reasons),
            )
        # Redaction and approval are the tool gateway's obligations: a model call cannot honour them.
        if decision.obligations:
            record()
            raise PolicyEvaluationFailed(
                f"the model gateway cannot honour obligations {sorted(decision.obligations)}: call refused "
                f"(decision {decision.decision_id})"
            )
        return decision, record

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def _record_step(
        self,
        request: ChatRequest,
        outcome: str,
        decision: PolicyDecision,
        result: ChatResult | None = None,
        timed: tuple[datetime, datetime] | None = None,
    ) -> None:
        """Fused mode: write the step's DecisionRecord when the request says where (`record`)."""
        if request.record is None:
            return
        if self._step_recorder is None:
            raise ConfigurationError(
                "record: this model gateway has no step recorder; build it with one (get_model_gateway does)"
            )
        started, ended = timed or (None, None)
        self._step_recorder.record_step(
            RecordStepRequest.model_validate(
                {
                    "tenant_id": request.tenant_id,
                    "session_id": request.record.session_id,
                    "fencing_token": request.record.fencing_token,
                    "run_id": request.run_id,
                    "step_id": request.step_id,
                    "attempt": request.record.attempt,
                    "node": Node(name=request.record.node, kind="model"),
                    "outcome": outcome,
                    "call": request.prompt_body(),
                    "result": result and result.model_dump(mode="json"),
                    "policy": StepPolicy.model_validate(decision.model_dump(mode="json")),
                    "started_at": started,
                    "ended_at": ended,
                }
            )
        )

    @staticmethod
    def _result(
        request: ChatRequest, routed: Routed, decision: PolicyDecision, reservation_id: str
    ) -> ChatResult:
        reported = routed.response["usage"]
        prompt_tokens, completion_tokens = reported["prompt_tokens"], reported["completion_tokens"]
        return ChatResult(
            id=str(routed.response.get("id", "")),
            tenant_id=request.tenant_id,
            run_id=request.run_id,
            step_id=request.step_id,
            tier=request.tier,
            choices=routed.response["choices"],
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=reported.get("total_tokens", prompt_tokens + completion_tokens),
            ),
            provider=routed.target.provider,
            model=str(routed.response.get("model") or routed.target.model),
            model_version=routed.version or _optional_str(routed.response.get("system_fingerprint")),
            latency_ms=routed.latency_ms,
            attempts=routed.attempts,
            decision_id=decision.decision_id,
            reservation_id=reservation_id,
        )

    @staticmethod
    def _record_quietly(record: Callable[[], object]) -> None:
        """Record (or finish recording) a failed call's decision; a failure here must not hide the call's."""
        try:
            record()
        except Exception:
            logger.exception("could not record the policy decision of a failed model call")

    def _release(self, request: ChatRequest, reservation: Reservation | None) -> None:
        """Settle a failed call's reservation with no usage; a failure here must not hide the call's."""
        if reservation is None:  # explicit mode: the state machine settles
            return
        try:
            self._metering.settle(
                SettleRequest(
                    tenant_id=request.tenant_id,
                    reservation_id=reservation.reservation_id,
                    input_tokens=0,
                    output_tokens=0,
                    run_id=request.run_id,
                    step_id=request.step_id,
                )
            )
        except Exception:
            logger.exception(
                "could not release reservation %s; it expires at %s",
                reservation.reservation_id,
                reservation.expires_at.isoformat(),
                extra={"tenant_id": request.tenant_id, "run_id": request.run_id, "step_id": request.step_id},
            )

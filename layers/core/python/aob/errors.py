"""AOB's errors: one base class and small subclasses named for what happened.

Class names are the contract with the state machines (`ErrorEquals`), so never rename one
lightly. Adapters translate driver errors into these with `raise ... from exc`.
"""

from __future__ import annotations


class AobError(Exception):
    """Base of every error AOB raises on purpose."""


class ConfigurationError(AobError):
    """A setting or a deployment input is wrong; the message says which and how to fix it."""


class InvalidInput(AobError):
    """A task or API input failed validation; the message names each bad field."""


class ServiceUnavailable(AobError):
    """A backing service (Postgres, Redis, AWS endpoint) did not answer; retrying may help."""


class MigrationError(AobError):
    """A database migration could not be applied, or an applied one no longer matches its file."""


class UnknownTenant(InvalidInput):
    """The tenant_id names no tenant; check it, or create the tenant first."""


class TenantSuspended(AobError):
    """The tenant exists but is suspended: it may not start governed work until reactivated."""


class QuotaExceeded(AobError):
    """A QPS bucket or a token budget refused a reservation; retrying after `retry_after` may pass.

    `scope` names what refused it (`tenant.qps`, `capability.tokens_per_day`, ...), so callers
    and state machines can tell a burst from an exhausted budget without reading the message.
    """

    def __init__(self, message: str, *, retry_after: float, scope: str) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.scope = scope

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only attributes survive pickling (multiprocessing, process pools).
        return _rebuild_quota_exceeded, (str(self), self.retry_after, self.scope)


def _rebuild_quota_exceeded(message: str, retry_after: float, scope: str) -> QuotaExceeded:
    return QuotaExceeded(message, retry_after=retry_after, scope=scope)


class UnknownReservation(InvalidInput):
    """A settlement names a reservation that was never made (or was forgotten long ago)."""


class LeaseHeld(AobError):
    """Another holder has the session's lease; retry after it expires or is released."""


class LeaseLost(AobError):
    """The caller no longer holds the lease (expired, released, or taken over): stop writing."""


class StaleFencingToken(AobError):
    """A write carried a fencing token older than one already used for the session: refused."""


class BundleRejected(AobError):
    """A policy bundle failed verification (signature, key id, file hashes) or did not compile.

    The bundle is not loaded; the last good bundle stays active.
    """


class PolicyEvaluationFailed(AobError):
    """The policy engine reached no decision (a broken policy, not a deny): the action is not allowed."""


class PolicyDenied(AobError):
    """The policy gate refused the action; `decision_id` names the recorded decision, `reasons` why."""

    def __init__(self, message: str, *, decision_id: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.decision_id = decision_id
        self.reasons = reasons

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild_policy_denied, (str(self), self.decision_id, self.reasons)


def _rebuild_policy_denied(message: str, decision_id: str, reasons: list[str]) -> PolicyDenied:
    return PolicyDenied(message, decision_id=decision_id, reasons=reasons)


class GovernanceMismatch(AobError):
    """A call's `governance` names no recorded allowing decision of its tenant for this very action.

    Explicit mode's gateway call carries the decision its CheckPolicy state recorded; one that is
    missing, another tenant's, or made for another action (tool, tier, principal, run, step) is
    refused: compile the workflow again rather than pass governance by hand.
    """


class UnknownModelTier(InvalidInput):
    """The request names a model tier the gateway has no route for; the message lists the tiers."""


class PromptTooLarge(InvalidInput):
    """The prompt (messages and tools) is longer than the tier allows; shorten it or pick another tier."""


class ModelRequestRejected(InvalidInput):
    """A model provider refused the request as malformed (HTTP 4xx other than 429): fix it, don't retry.

    No other provider is tried: they would refuse it too.
    """


class ModelUnavailable(ServiceUnavailable):
    """No provider of the tier answered (down, timed out, 5xx/429, breaker open): retry later.

    The state machine's Retry on `ModelUnavailable` is the intended handling.
    """


class UnknownTool(InvalidInput):
    """The call names a tool the gateway does not have; the message lists the known tools."""


class InvalidToolArguments(InvalidInput):
    """A tool call's arguments do not match the tool's schema; the message names each bad field."""


class ToolNotAllowed(AobError):
    """The call would reach a host outside the tool's allow-list: refused before any request."""


class ApprovalRequired(AobError):
    """The policy allows the action only with a human approval (obligation `require_approval`)."""

    def __init__(self, message: str, *, decision_id: str, approver_roles: list[str], reason: str) -> None:
        super().__init__(message)
        self.decision_id = decision_id
        self.approver_roles = approver_roles
        self.reason = reason

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild_approval_required, (str(self), self.decision_id, self.approver_roles, self.reason)


def _rebuild_approval_required(
    message: str, decision_id: str, approver_roles: list[str], reason: str
) -> ApprovalRequired:
    return ApprovalRequired(message, decision_id=decision_id, approver_roles=approver_roles, reason=reason)


class ToolFailed(AobError):
    """The tool ran and reported a failure; `error_type` says which (a Lambda errorType, `HTTP 404`, ...)."""

    def __init__(self, message: str, *, error_type: str) -> None:
        super().__init__(message)
        self.error_type = error_type

    def __reduce__(self) -> tuple[object, ...]:
        return _rebuild_tool_failed, (type(self), str(self), self.error_type)


def _rebuild_tool_failed(cls: type[ToolFailed], message: str, error_type: str) -> ToolFailed:
    return cls(message, error_type=error_type)


class ToolResponseTooLarge(ToolFailed):
    """The tool's response passed its size cap: reading stopped there and nothing was returned."""

    def __init__(self, message: str, *, error_type: str = "ToolResponseTooLarge") -> None:
        super().__init__(message, error_type=error_type)


class ToolUnavailable(ServiceUnavailable):
    """The tool did not answer (timeout, connection refused, HTTP 5xx/429, throttled): retrying may help."""


class ToolCallInProgress(AobError):
    """The same tool call (same idempotency key) is running elsewhere: retry after it finishes."""


class UnknownRun(InvalidInput):
    """The run_id names no run of this tenant; check both ids (runs of other tenants are not visible)."""


class UnknownStep(InvalidInput):
    """The step_id names no step of the run; record the step first, or leave step_id out."""


class SpecInvalid(InvalidInput):
    """A workflow spec is malformed; `problems` lists each as `nodes.<name>.<field>: message`.

    Nothing is compiled or deployed from it: fix every listed problem and compile again.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the workflow spec is invalid:\n  " + "\n  ".join(problems))
        self.problems = problems

    def __reduce__(self) -> tuple[object, ...]:
        return SpecInvalid, (self.problems,)


class ApprovalRejected(AobError):
    """An approver rejected the step (the approval task fails with this error name)."""


class NoPendingApproval(InvalidInput):
    """The run has no approval waiting for a decision (none requested, or already decided)."""


class ApprovalExpired(AobError):
    """The approval's time ran out (or Step Functions no longer waits for it): it cannot be decided."""


class LoopBoundExceeded(AobError):
    """A workflow loop passed its choice's `max_iterations`: the run stops instead of looping on."""


class UnknownWorkflow(InvalidInput):
    """The tenant has no published workflow of that name (or version): publish it (`aob deploy SPEC`)."""


class RunNotStarted(ServiceUnavailable):
    """Step Functions refused to start the run; the run is stored as failed with the error.

    Starting again with the same idempotency key retries the same run.
    """

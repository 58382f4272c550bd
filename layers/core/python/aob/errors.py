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

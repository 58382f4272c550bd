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

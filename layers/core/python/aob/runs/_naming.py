"""Names of published workflows' state machines: unique per stage, tenant, workflow, version, mode.

`aob-<stage>_` starts every name: a stage holds only `[a-z0-9-]`, so the prefix (with its `_`)
is the stage's alone, and IAM grants `stateMachine:aob-<stage>_*` to the stack's functions.
"""

from __future__ import annotations

import hashlib
import re

from aob.errors import InvalidInput

MAX_LENGTH = 80  # Step Functions' limit on a state machine's name
_STAGE = re.compile(r"^[a-z0-9-]{1,16}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def name_prefix(stage: str) -> str:
    """The prefix of every workflow state machine of a stage (the template's IAM grants use it)."""
    if not _STAGE.match(stage):
        raise InvalidInput(f"stage: {stage!r} must be 1-16 of a-z, 0-9 and -, e.g. local")
    return f"aob-{stage}_"


def state_machine_name(stage: str, tenant_id: str, workflow: str, version: int, mode: str) -> str:
    """`aob-<stage>_<tenant>_<workflow>_v<version>_<mode>`; too long: shortened, with a hash of it."""
    prefix = name_prefix(stage)
    body = _UNSAFE.sub("-", f"{tenant_id}_{workflow}_v{version}_{mode}")
    if len(prefix) + len(body) <= MAX_LENGTH:
        return prefix + body
    digest = hashlib.sha256(body.encode()).hexdigest()[:10]
    return f"{prefix}{body[: MAX_LENGTH - len(prefix) - len(digest) - 1]}-{digest}"

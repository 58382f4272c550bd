"""What every Lambda handler shares: turning an event into its pydantic input model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from aob.errors import InvalidInput


def parse_event[M: BaseModel](model: type[M], event: Any) -> M:
    """Validate a handler's event; a bad one raises InvalidInput naming each field and the fix."""
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '<event>'}: {error['msg']}" for error in exc.errors()
        )
        raise InvalidInput(f"invalid {model.__name__} input: {problems}") from exc

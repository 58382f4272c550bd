"""A handler whose dependency is missing: the Lambda runtime has no pydantic without a layer."""

from __future__ import annotations

from typing import Any

import pydantic


def handler(event: dict[str, Any], context: Any) -> str:
    return pydantic.VERSION

"""Shaping a call's data: redaction at the policy's JSONPath-like paths, and the result's size cap.

Paths start at `$` and address the call as `{"args": ..., "result": ...}`: `$.args.card_number`,
`$.result.customer.email`, `$.result.lines[*].card`, `$.result['odd key'][0]`. Segments are
`.name`, `['name']`, `[index]` and the wildcards `.*` and `[*]`. A path that matches nothing
redacts nothing; a path that does not parse is a broken policy (PolicyEvaluationFailed), since
an obligation the gateway cannot honour must stop the call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import JsonValue

from aob.errors import PolicyEvaluationFailed

REDACTED = "[REDACTED]"
_WILDCARD = object()
_SEGMENT = re.compile(r"\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*|\*)|\[(?P<index>\d+|\*)\]|\['(?P<quoted>[^']+)'\]")

type Segment = str | int | object
type Root = Literal["args", "result"]


def parse_path(path: str) -> tuple[Segment, ...]:
    """The segments of `path`, wildcards as `_WILDCARD`; ValueError if it does not parse."""
    if not path.startswith("$"):
        raise ValueError(f"redaction path {path!r} does not start with $")
    segments: list[Segment] = []
    position = 1
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if match is None:
            raise ValueError(f"redaction path {path!r} does not parse at character {position}")
        name, index, quoted = match.group("name", "index", "quoted")
        if name == "*" or index == "*":
            segments.append(_WILDCARD)
        else:
            segments.append(int(index) if index is not None else name or quoted)
        position = match.end()
    return tuple(segments)


def _keys(value: Any, head: Segment) -> list[Any]:
    """The keys or indexes of `value` that `head` addresses."""
    if isinstance(value, dict):
        return list(value) if head is _WILDCARD else [head] if isinstance(head, str) and head in value else []
    if isinstance(value, list):
        if head is _WILDCARD:
            return list(range(len(value)))
        return [head] if isinstance(head, int) and head < len(value) else []
    return []


def _redact(value: Any, segments: tuple[Segment, ...]) -> tuple[Any, bool]:
    """A copy of `value` with what `segments` address replaced, and whether anything was."""
    if not segments:
        return REDACTED, True
    keys = _keys(value, segments[0])
    copy = dict(value) if isinstance(value, dict) else list(value) if keys else value
    hit = False
    for key in keys:
        copy[key], matched = _redact(copy[key], segments[1:])
        hit = hit or matched
    return (copy if hit else value), hit


@dataclass(frozen=True)
class Redaction:
    """The `redact` obligation of a decision: paths into the call's args and result."""

    paths: tuple[tuple[str, tuple[Segment, ...]], ...] = ()

    @classmethod
    def from_obligation(cls, paths: JsonValue) -> Redaction:
        if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
            raise PolicyEvaluationFailed(f"the redact obligation must be a list of paths, not {paths!r}")
        try:
            return cls(tuple((str(path), parse_path(str(path))) for path in paths))
        except ValueError as exc:
            raise PolicyEvaluationFailed(f"the redact obligation cannot be honoured: {exc}") from exc

    def apply[V: JsonValue](self, root: Root, value: V) -> tuple[V, list[str]]:
        """`value` (the call's `root`) with the paths under that root redacted, and the paths that matched."""
        matched: list[str] = []
        for path, segments in self.paths:
            if segments[:1] == (root,):
                # `$.args` alone means every argument's value: the tool still gets its arguments.
                value, hit = _redact(value, segments[1:] or ((_WILDCARD,) if root == "args" else ()))
                if hit:
                    matched.append(path)
        return value, matched


def truncate(value: JsonValue, max_bytes: int) -> tuple[JsonValue, bool]:
    """`value`, or if its JSON text passes `max_bytes`, that text's first `max_bytes` bytes (a string).

    A cut JSON document is text, not JSON: the caller (often a model reading a tool's answer)
    gets as much as fits, and `truncated` tells it so.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    if len(text) <= max_bytes:
        return value, False
    return text[:max_bytes].decode(errors="ignore"), True

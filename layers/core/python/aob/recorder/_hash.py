"""The hash chain: each record's hash covers its content and the previous record's hash.

hash = sha256 hex of the canonical JSON (sorted keys, no whitespace, ASCII) of
`{"prev_hash": <previous hash or null>, "record": <content>}`, where content is the record as
stored in `decision_records.record`. Anyone holding the rows can recompute it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: keys sorted, no whitespace, non-ASCII escaped, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def record_hash(content: dict[str, Any], prev_hash: str | None) -> str:
    """The chain hash of a record's content following `prev_hash` (None for a run's first record)."""
    return hashlib.sha256(canonical_json({"prev_hash": prev_hash, "record": content})).hexdigest()

"""Canonical JSON and the chain hash of DecisionRecords: stable, order-free, and linked."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aob.recorder import DecisionRecord, canonical_json, record_hash
from pydantic import ValidationError

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def step(**changes: object) -> DecisionRecord:
    return DecisionRecord.model_validate(
        {
            "run_id": "6f1c1f5e-8a4b-4d0e-9a53-2f1b8a0c9d11",
            "node": {"name": "CallModel", "kind": "model"},
            "outcome": "succeeded",
            "prompt": "Summarise the order",
            "model": {"name": "small", "version": "2026-01"},
            "usage": {"input_tokens": 12, "output_tokens": 3},
            "timings": {"started_at": STARTED, "ended_at": STARTED + timedelta(milliseconds=250)},
        }
        | changes
    )


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert (
        canonical_json({"b": [1, {"d": 2, "c": "é"}], "a": None})
        == b'{"a":null,"b":[1,{"c":"\\u00e9","d":2}]}'
    )


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_hash_is_sha256_of_canonical_content_and_prev_hash() -> None:
    content = {"b": 1, "a": "x"}
    expected = hashlib.sha256(b'{"prev_hash":"abc","record":{"a":"x","b":1}}').hexdigest()
    assert record_hash(content, "abc") == expected
    assert record_hash({"a": "x", "b": 1}, "abc") == expected


def test_hash_changes_with_content_and_with_prev_hash() -> None:
    content = step().model_dump(mode="json")
    first = record_hash(content, None)
    assert record_hash(content, first) != first
    assert (
        record_hash(step(usage={"input_tokens": 12, "output_tokens": 4}).model_dump(mode="json"), None)
        != first
    )


def test_the_same_record_hashes_the_same_every_time() -> None:
    assert record_hash(step().model_dump(mode="json"), None) == record_hash(
        step().model_dump(mode="json"), None
    )


def test_record_content_is_json_with_iso_times_and_derived_duration() -> None:
    content = step(step_id=str(uuid.UUID(int=7))).model_dump(mode="json")
    assert content["timings"] == {
        "started_at": "2026-01-02T03:04:05Z",
        "ended_at": "2026-01-02T03:04:05.250000Z",
        "duration_ms": 250,
    }
    assert content["step_id"] == "00000000-0000-0000-0000-000000000007"
    assert DecisionRecord.model_validate(content) == step(step_id=str(uuid.UUID(int=7)))


@pytest.mark.parametrize(
    "changes",
    [
        {"timings": {"started_at": STARTED, "ended_at": STARTED - timedelta(seconds=1)}},
        {"timings": {"started_at": STARTED.replace(tzinfo=None), "ended_at": STARTED}},
        {"outcome": "maybe"},
        {"attempt": 0},
        {"surprise": 1},
    ],
)
def test_invalid_records_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        step(**changes)

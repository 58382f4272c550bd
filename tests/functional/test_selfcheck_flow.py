"""The self-check flow from template.yaml, executed by moto with handlers run in-process."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from aob.cache import get_redis
from aob.db import get_pool
from aob.errors import InvalidInput
from aob.selfcheck import SelfcheckRequest, run_step

from tests.functional.harness import InProcessStack

EVENTS = Path(__file__).resolve().parents[1] / "events"


def _events_of(execution: str) -> list[dict]:
    with get_pool().connection() as conn:
        rows = conn.execute(
            "SELECT seq, payload FROM events WHERE tenant_id = 'system' AND stream_id = %s ORDER BY seq",
            (f"selfcheck:{execution}",),
        ).fetchall()
    return [{"seq": seq, **payload} for seq, payload in rows]


def _history_types(described: dict) -> list[str]:
    return [event["type"] for event in described["history"]]


def test_flow_writes_postgres_and_redis_and_returns_output(stack: InProcessStack) -> None:
    described = stack.run("SelfcheckStateMachine", {"message": "hi"})

    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    record, confirm = output["record"]["result"], output["confirm"]["result"]
    assert (record["step"], record["attempt"], record["event_seq"]) == ("record", 1, 1)
    assert confirm["event_seq"] == 2
    events = _events_of(described["name"])
    assert [(e["seq"], e["step"], e["message"]) for e in events] == [
        (1, "record", "hi"),
        (2, "confirm", "hello"),
    ]
    assert json.loads(get_redis().get(record["redis_key"]))["event_id"] == record["event_id"]


def test_transient_failure_is_retried_by_the_state_machine(stack: InProcessStack) -> None:
    described = stack.run("SelfcheckStateMachine", {"fail": "first_attempt"})

    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["record"]["result"]["attempt"] == 2
    failures = [e for e in described["history"] if e["type"] == "TaskFailed"]
    assert [f["taskFailedEventDetails"]["error"] for f in failures] == ["TransientSelfcheckError"]
    assert len(_events_of(described["name"])) == 2  # the failed attempt wrote nothing


def test_permanent_failure_is_caught_by_its_class_name(stack: InProcessStack) -> None:
    described = stack.run("SelfcheckStateMachine", {"fail": "always"})

    assert described["status"] == "FAILED"
    assert described["error"] == "SelfcheckFailed"
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in described["history"] if e["type"] == "FailStateEntered"
    ]
    assert entered == ["ReportFailure"]
    assert _events_of(described["name"]) == []


def test_bad_flow_input_fails_naming_the_field(stack: InProcessStack) -> None:
    described = stack.run("SelfcheckStateMachine", {"fail": "sometimes"})

    assert described["status"] == "FAILED"
    assert described["error"] == "InvalidInput"
    assert "flow.fail" in described["cause"]
    assert _events_of(described["name"]) == []


def test_handler_accepts_the_recorded_event(stack: InProcessStack) -> None:
    event = json.loads((EVENTS / "selfcheck_record.json").read_text())
    event["execution"] = f"event-{uuid.uuid4().hex[:8]}"
    result = run_step(SelfcheckRequest.model_validate(event))
    assert result.event_seq == 1 and result.layer_version


def test_unknown_field_is_refused_before_any_write(stack: InProcessStack) -> None:
    with pytest.raises(InvalidInput, match="flow.colour"):
        from aob.handlers import parse_event

        parse_event(SelfcheckRequest, {"execution": "x", "step": "record", "flow": {"colour": "red"}})

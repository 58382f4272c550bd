"""Metering inputs, budget periods and quota errors: pure logic, no Redis or Postgres."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from aob.errors import InvalidInput, QuotaExceeded
from aob.handlers import parse_event
from aob.metering import MeteringRequest, ReserveRequest, SettleRequest, UsageQuery
from aob.metering.models import periods_at


def _ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def _ms(year: int, month: int, day: int) -> int:
    return int(_ts(year, month, day) * 1000)


def test_event_action_picks_the_request_model() -> None:
    reserve = {"action": "reserve", "tenant_id": "acme", "capability": "model_gateway", "estimate_tokens": 5}
    settle = {
        "action": "settle",
        "tenant_id": "acme",
        "reservation_id": "r1",
        "input_tokens": 1,
        "output_tokens": 2,
    }

    assert isinstance(parse_event(MeteringRequest, reserve).root, ReserveRequest)
    assert isinstance(parse_event(MeteringRequest, settle).root, SettleRequest)
    assert parse_event(MeteringRequest, {"action": "usage", "tenant_id": "acme"}).root == UsageQuery(
        tenant_id="acme"
    )


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (
            {"action": "reserve", "tenant_id": "acme", "capability": "model_gateway", "estimate_tokens": -1},
            "estimate_tokens: Input should be greater than or equal to 0",
        ),
        ({"action": "reserve", "tenant_id": "Acme!", "capability": "m", "estimate_tokens": 1}, "tenant_id"),
        (
            {"action": "reserve", "tenant_id": "acme", "capability": "m", "estimate_tokens": "many"},
            "estimate_tokens",
        ),
        ({"action": "reserve", "tenant_id": "acme", "estimate_tokens": 1}, "capability: Field required"),
        (
            {"action": "reserve", "tenant_id": "acme", "capability": "m", "estimate_tokens": 1, "x": 1},
            "x: Extra",
        ),
        (
            {"action": "settle", "tenant_id": "acme", "reservation_id": "r", "input_tokens": 1},
            "output_tokens",
        ),
        (
            {
                "action": "settle",
                "tenant_id": "acme",
                "reservation_id": "bad id",
                "input_tokens": 1,
                "output_tokens": 1,
            },
            "reservation_id",
        ),
        (
            {"action": "usage", "tenant_id": "acme", "since": "2030-02-01", "until": "2030-01-01"},
            "is after until",
        ),
        ({"tenant_id": "acme"}, "discriminator 'action'"),
        ({"action": "refund", "tenant_id": "acme"}, "'reserve', 'settle', 'usage'"),
        ([1, 2], "valid dictionary"),
    ],
)
def test_malformed_events_name_the_bad_field(event: object, problem: str) -> None:
    with pytest.raises(InvalidInput, match="invalid MeteringRequest input") as caught:
        parse_event(MeteringRequest, event)

    assert problem in str(caught.value)


def test_day_and_month_periods_are_utc_and_end_at_the_next_one() -> None:
    day, month = periods_at(_ts(2030, 12, 31, 23, 59, 59))

    assert (day.kind, day.label, day.end_ms) == ("day", "2030-12-31", _ms(2031, 1, 1))
    assert (month.kind, month.label, month.end_ms) == ("month", "2030-12", _ms(2031, 1, 1))


def test_a_leap_february_ends_on_march_first() -> None:
    day, month = periods_at(_ts(2032, 2, 29, 0, 0, 0))

    assert (day.label, day.end_ms) == ("2032-02-29", _ms(2032, 3, 1))
    assert (month.label, month.end_ms) == ("2032-02", _ms(2032, 3, 1))


def test_quota_exceeded_carries_retry_after_and_scope_through_pickling() -> None:
    error = QuotaExceeded(
        "tenant.qps quota exceeded; retry after 0.250 s", retry_after=0.25, scope="tenant.qps"
    )

    copy = pickle.loads(pickle.dumps(error))

    assert (str(copy), copy.retry_after, copy.scope) == (str(error), 0.25, "tenant.qps")
    assert type(copy).__name__ == "QuotaExceeded"  # the Step Functions ErrorEquals name

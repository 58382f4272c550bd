"""Session-lease inputs: the event's action picks the model; bad fields are named."""

from __future__ import annotations

import pytest
from aob.errors import InvalidInput
from aob.handlers import parse_event
from aob.lease import AcquireLease, LeaseRequest, ReleaseLease, RenewLease

BASE = {
    "tenant_id": "acme",
    "session_id": "sess-1",
    "holder": "arn:aws:states:us-east-1:1:execution:flow:run-1",
}


def test_event_action_picks_the_request_model() -> None:
    acquire = parse_event(LeaseRequest, {"action": "acquire", **BASE}).root
    renew = parse_event(LeaseRequest, {"action": "renew", "fencing_token": 7, "ttl_s": 5, **BASE}).root
    release = parse_event(LeaseRequest, {"action": "release", **BASE}).root

    assert isinstance(acquire, AcquireLease) and acquire.ttl_s == 60
    assert isinstance(renew, RenewLease) and (renew.fencing_token, renew.ttl_s) == (7, 5)
    assert isinstance(release, ReleaseLease) and release.fencing_token is None


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        ({"action": "acquire", **BASE, "ttl_s": 0}, "acquire.ttl_s: Input should be greater than 0"),
        (
            {"action": "acquire", **BASE, "ttl_s": 3600},
            "acquire.ttl_s: Input should be less than or equal to 900",
        ),
        ({"action": "renew", **BASE, "fencing_token": -3}, "renew.fencing_token"),
        ({"action": "release", **BASE, "holder": ""}, "release.holder"),
        ({"action": "acquire", **BASE, "session_id": "a b"}, "acquire.session_id"),
        ({"action": "acquire", **BASE, "tenant_id": "../etc"}, "acquire.tenant_id"),
        ({"action": "acquire", "tenant_id": "acme", "holder": "h"}, "acquire.session_id: Field required"),
        ({"action": "steal", **BASE}, "'acquire', 'renew', 'release'"),
        ({"action": "release", **BASE, "ttl_s": 5}, "release.ttl_s: Extra inputs are not permitted"),
    ],
)
def test_malformed_events_name_the_bad_field(event: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidInput, match="invalid LeaseRequest input") as caught:
        parse_event(LeaseRequest, event)

    assert problem in str(caught.value)

"""http tools on an in-memory transport: allow-list, request shape, size cap, status and error mapping."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from aob.errors import ToolFailed, ToolNotAllowed, ToolResponseTooLarge, ToolUnavailable
from aob.tools import HttpTool
from pydantic import BaseModel, ConfigDict

KEY = "tool:" + "ab" * 32


class SearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    region: str = "eu"
    q: str
    limit: int | None = None


class Recorder:
    """A transport that records each request and answers with `respond`."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._respond = respond

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)


def ok(body: Any = None) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, json={"ok": True} if body is None else body)


def tool(
    transport: Recorder,
    *,
    url: str = "https://search.example/{region}/find",
    method: str = "GET",
    allowed: tuple[str, ...] = ("search.example",),
    cap: int = 1024,
) -> HttpTool:
    client = httpx.Client(transport=httpx.MockTransport(transport))
    return HttpTool(
        "web_search",
        "Search the web",
        SearchArgs,
        method=method,  # type: ignore[arg-type]
        url=url,
        allowed_hosts=allowed,
        client=lambda: client,
        headers={"X-Team": "aob"},
        max_response_bytes=cap,
    )


def call(http: HttpTool, **args: Any) -> Any:
    return http.execute(http.validate(args), KEY)


def test_get_puts_placeholders_in_the_path_and_other_arguments_in_the_query() -> None:
    transport = Recorder(ok({"hits": ["a"]}))

    result = call(tool(transport), q="refund policy", limit=3)

    (request,) = transport.requests
    assert result == {"hits": ["a"]}
    assert (request.method, str(request.url)) == (
        "GET",
        "https://search.example/eu/find?q=refund+policy&limit=3",
    )
    assert request.headers["Idempotency-Key"] == KEY and request.headers["X-Team"] == "aob"


def test_post_sends_the_other_arguments_as_a_json_body() -> None:
    transport = Recorder(ok())

    call(tool(transport, method="POST"), region="us", q="x")

    (request,) = transport.requests
    assert (request.method, request.url.path) == ("POST", "/us/find")
    assert json.loads(request.content) == {"q": "x"}


def test_placeholders_are_percent_encoded_so_an_argument_cannot_change_the_path() -> None:
    transport = Recorder(ok())

    call(tool(transport), region="../admin?x=1#", q="x")

    assert transport.requests[0].url.raw_path == b"/..%2Fadmin%3Fx%3D1%23/find?q=x"


@pytest.mark.parametrize(
    ("url", "allowed", "region"),
    [
        ("https://search.example:8443/{region}", ("search.example",), "eu"),  # port must match too
        ("https://search.example/{region}", ("search.example:8443",), "eu"),
        ("https://{region}.search.example/find", ("eu.search.example",), "evil.example/"),
        ("https://{region}/find", ("search.example",), "evil.example"),
        ("http://localhost/{region}", ("127.0.0.1",), "eu"),  # exact: no name resolution
    ],
)
def test_a_host_off_the_allow_list_is_refused_before_any_request(
    url: str, allowed: tuple[str, ...], region: str
) -> None:
    transport = Recorder(ok())
    http = tool(transport, url=url, allowed=allowed)

    with pytest.raises(ToolNotAllowed, match="web_search may not call .* not on the allow-list"):
        http.validate({"region": region, "q": "x"})
    with pytest.raises(ToolNotAllowed):  # and at execution, whatever the arguments became
        http.execute({"region": region, "q": "x", "limit": None}, KEY)
    assert transport.requests == []


def test_an_allow_listed_host_with_a_port_is_matched_exactly() -> None:
    transport = Recorder(ok())

    call(tool(transport, url="http://127.0.0.1:8080/{region}", allowed=("127.0.0.1:8080",)), q="x")

    assert transport.requests[0].url.port == 8080


def test_a_declared_length_over_the_cap_is_refused_without_reading() -> None:
    transport = Recorder(lambda request: httpx.Response(200, content=b"[" + b"1," * 1000 + b"1]"))

    with pytest.raises(ToolResponseTooLarge, match="web_search: the response is larger than 1024 bytes"):
        call(tool(transport), q="x")


def test_a_streamed_response_stops_being_read_past_the_cap() -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for index in range(100):
            sent.append(index)
            yield b" " * 256

    transport = Recorder(lambda request: httpx.Response(200, content=chunks()))  # no Content-Length

    with pytest.raises(ToolResponseTooLarge) as refused:
        call(tool(transport), q="x")

    assert refused.value.error_type == "ToolResponseTooLarge"
    assert len(sent) == 5  # 5 * 256 bytes passed 1024: the other 95 chunks were never read


@pytest.mark.parametrize(
    ("respond", "error", "detail"),
    [
        (lambda r: httpx.Response(404, json={}), ToolFailed, "HTTP 404"),
        (
            lambda r: httpx.Response(302, headers={"Location": "https://evil.example/"}),
            ToolFailed,
            "HTTP 302",
        ),
        (lambda r: httpx.Response(200, content=b"<html>"), ToolFailed, "InvalidJson"),
        (lambda r: httpx.Response(503), ToolUnavailable, "answered HTTP 503"),
        (lambda r: httpx.Response(429), ToolUnavailable, "answered HTTP 429"),
    ],
)
def test_statuses_and_bodies_map_to_named_errors(
    respond: Callable[[httpx.Request], httpx.Response], error: type[Exception], detail: str
) -> None:
    transport = Recorder(respond)

    with pytest.raises(error) as failed:
        call(tool(transport), q="x")

    assert detail in (getattr(failed.value, "error_type", "") + str(failed.value))
    assert len(transport.requests) == 1  # never a second request: no redirects, no retries


def test_a_timeout_is_tool_unavailable() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ToolUnavailable, match="web_search: ReadTimeout calling search.example"):
        call(tool(Recorder(timeout)), q="x")


def test_an_empty_body_is_a_null_result() -> None:
    assert call(tool(Recorder(lambda request: httpx.Response(204))), q="x") is None

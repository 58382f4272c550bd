"""A tiny search service for the research agent's `web_search` tool: /search?q= over a built-in corpus.

Stdlib only, so it runs anywhere the examples do:

    python examples/research_agent/search_service.py --port 8765

or, in a test, `with SearchService() as search: ... search.url` (a free port, served by a thread;
`search.queries` lists what it was asked). A result list is a few hundred bytes at most, so a
round of the agent fits the local model's small context.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_RESULTS = 2
CORPUS: tuple[dict[str, str], ...] = (
    {
        "title": "Step Functions",
        "url": "https://example.org/step-functions",
        "snippet": "AWS Step Functions runs state machines written in the Amazon States Language.",
    },
    {
        "title": "AWS Lambda",
        "url": "https://example.org/lambda",
        "snippet": "Lambda runs a function per event; a state machine task can invoke it.",
    },
    {
        "title": "vLLM",
        "url": "https://example.org/vllm",
        "snippet": "vLLM serves language models behind an OpenAI-compatible chat API.",
    },
    {
        "title": "Open Policy Agent",
        "url": "https://example.org/opa",
        "snippet": "Rego policies decide whether an action is allowed, given input and data.",
    },
    {
        "title": "Eiffel Tower",
        "url": "https://example.org/eiffel-tower",
        "snippet": "The Eiffel Tower in Paris is 330 metres tall and opened in 1889.",
    },
    {
        "title": "Paris",
        "url": "https://example.org/paris",
        "snippet": "Paris is the capital of France, with about 2.1 million inhabitants.",
    },
)
_TERM = re.compile(r"[a-z0-9]+")
_STOPWORD_TEXT = "a an and are how in is of on or the to what when where which who with"
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def search(query: str, limit: int = MAX_RESULTS) -> dict[str, Any]:
    """The entries sharing the most words (stopwords aside) with the query, best first."""
    terms = set(_TERM.findall(query.lower())) - _STOPWORDS
    scored = [(len(terms & set(_TERM.findall(f"{e['title']} {e['snippet']}".lower()))), e) for e in CORPUS]
    ranked = sorted((pair for pair in scored if pair[0] > 0), key=lambda pair: -pair[0])
    return {"query": query, "results": [entry for _, entry in ranked[:limit]]}


class _Server(ThreadingHTTPServer):
    """The HTTP server, keeping each /search query it was asked (so a test can tell it was reached)."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.queries: list[str] = []


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query).get("q", [""])[0]
        if parts.path == "/search":
            self.server.queries.append(query)
        if parts.path != "/search" or not query.strip():
            self._answer(400 if parts.path == "/search" else 404, {"error": "use /search?q=<words>"})
            return
        self._answer(200, search(query))

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # quiet: tests and the demo print what matters


class SearchService:
    """The service on 127.0.0.1:`port` (0: a free one), served by a daemon thread until `stop`."""

    def __init__(self, port: int = 0) -> None:
        self._http = _Server(("127.0.0.1", port))
        self.port: int = self._http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def queries(self) -> list[str]:
        """Each /search query received so far, in order (empty ones included)."""
        return list(self._http.queries)

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()

    def __enter__(self) -> SearchService:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    port = parser.parse_args().port
    with _Server(("127.0.0.1", port)) as server:
        print(f"search service on http://127.0.0.1:{port}/search?q=", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    main()

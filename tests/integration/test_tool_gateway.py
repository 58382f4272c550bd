"""ToolGateway for real: the repo's policies (signed here), Postgres, Redis and a local HTTP tool server."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
from aob.errors import (
    ApprovalRequired,
    InvalidToolArguments,
    PolicyDenied,
    QuotaExceeded,
    ToolCallInProgress,
    ToolNotAllowed,
    ToolResponseTooLarge,
    UnknownTool,
)
from aob.metering import Metering, RedisQuotaStore, Settlement, SettleRequest, UsageLedger
from aob.policy import (
    PolicyBundleStore,
    PolicyDecision,
    PolicyInput,
    PolicyService,
    PostgresDecisionRecorder,
    policy_files,
    sign_bundle,
)
from aob.tenants import create_tenant, get_tenant
from aob.tools import (
    REDACTED,
    IdempotentCalls,
    ToolCall,
    ToolGateway,
    ToolRegistry,
    get_http_client,
    idempotency_key,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg_pool import ConnectionPool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KEY = Ed25519PrivateKey.generate()
BUNDLE = sign_bundle(policy_files(ROOT / "policies"), KEY, "test")
INSERT_WORKFLOW = """
INSERT INTO workflows (tenant_id, name, version, spec, spec_sha256)
VALUES (%s, 'refunds', 1, '{}', 'sha') RETURNING workflow_id
"""
INSERT_RUN = "INSERT INTO runs (tenant_id, workflow_id, status) VALUES (%s, %s, 'running') RETURNING run_id"
INSERT_STEP = """
INSERT INTO steps (tenant_id, run_id, state_name, kind) VALUES (%s, %s, 'CallTool', 'tool') RETURNING step_id
"""


class ToolServer:
    """Payments and search endpoints on 127.0.0.1 that count and keep every request they answer."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.hold = threading.Event()  # while clear, refunds wait (set: answer at once)
        self.hold.set()
        self.arrived = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                server.requests.append(
                    {"path": self.path, "body": body, "key": self.headers["Idempotency-Key"]}
                )
                server.arrived.set()
                server.hold.wait(10)
                order_id = self.path.split("/")[2]
                self._answer(
                    {
                        "refund_id": f"r-{len(server.requests)}",
                        "order_id": order_id,
                        "amount": body["amount"],
                        "card_number": body.get("card_number"),
                        "customer": {"email": "ada@example.com", "name": "Ada"},
                    }
                )

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {name: values[0] for name, values in parse_qs(url.query).items()}
                server.requests.append({"path": url.path, "query": query})
                self._answer({"q": query["q"], "text": "x" * int(query["size"])})

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def server() -> Iterator[ToolServer]:
    started = ToolServer()
    yield started
    started.hold.set()
    started.close()


def tools_file(directory: Path, port: int) -> Path:
    here = f"127.0.0.1:{port}"
    tools = [
        {
            "name": "issue_refund",
            "kind": "http",
            "description": "Refund an order",
            "method": "POST",
            "url": f"http://{here}/orders/{{order_id}}/refunds",
            "allowed_hosts": [here],
            "args": {
                "order_id": {"type": "string", "pattern": "^o-[0-9]+$"},
                "amount": {"type": "number", "ge": 0.01},
                "card_number": {"type": "string", "required": False},
            },
            "result": {"refund_id": {"type": "string"}},
        },
        {
            "name": "web_search",
            "kind": "http",
            "description": "Search",
            "method": "GET",
            "url": f"http://{here}/search",
            "allowed_hosts": [here],
            "max_response_bytes": 4096,
            "args": {"q": {"type": "string"}, "size": {"type": "integer", "default": 10}},
        },
        {  # the same server by another name: not what the allow-list says
            "name": "send_email",
            "kind": "http",
            "description": "Send an email",
            "method": "POST",
            "url": f"http://localhost:{port}/send",
            "allowed_hosts": [here],
            "args": {"to": {"type": "string"}},
        },
    ]
    path = directory / "tools.json"
    path.write_text(json.dumps({"tools": tools}))
    return path


class Crash(Exception):
    """The process dies: raised where the test wants the attempt to stop."""


class CrashingMeter:
    """Metering that dies once at settle: after the tool ran and its record was saved."""

    def __init__(self, metering: Metering) -> None:
        self._metering = metering
        self.reserve = metering.reserve
        self.crashes = 1

    def settle(self, request: SettleRequest) -> Settlement:
        if self.crashes:
            self.crashes -= 1
            raise Crash("killed between the side effect and the response")
        return self._metering.settle(request)


class RedactResults:
    """The real policy, with one more redaction path under $.result (the shipped packs name none yet)."""

    def __init__(self, policy: PolicyService, path: str) -> None:
        self._policy = policy
        self._path = path

    def check(self, request: PolicyInput) -> PolicyDecision:
        decision = self._policy.check(request)
        redact = [*decision.obligations.get("redact", []), self._path]  # type: ignore[misc]
        return decision.model_copy(update={"obligations": decision.obligations | {"redact": redact}})


@pytest.fixture
def policy(db_pool: ConnectionPool) -> PolicyService:
    store = PolicyBundleStore({"test": KEY.public_key()})
    store.load(BUNDLE)
    return PolicyService(store, PostgresDecisionRecorder(db_pool), get_tenant)


@pytest.fixture
def metering(db_pool: ConnectionPool, redis_client: redis.Redis, redis_key_prefix: str) -> Metering:
    return Metering(RedisQuotaStore(redis_client, key_prefix=redis_key_prefix), UsageLedger(db_pool))


@pytest.fixture
def make_gateway(
    server: ToolServer,
    tmp_path: Path,
    policy: PolicyService,
    metering: Metering,
    redis_client: redis.Redis,
    redis_key_prefix: str,
) -> Callable[..., ToolGateway]:
    """Gateways over the same registry, policy, metering and Redis: each one a fresh container."""
    registry = ToolRegistry.load(tools_file(tmp_path, server.port), get_http_client)

    def make(policy_gate: Any = policy, meter: Any = metering, **options: Any) -> ToolGateway:
        calls = IdempotentCalls(redis_client, key_prefix=redis_key_prefix)
        return ToolGateway(registry, policy_gate, meter, calls, **options)

    return make


class Run:
    """A registered run of a tenant (the usage ledger refers to runs and steps): steps are added per call."""

    def __init__(self, pool: ConnectionPool, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._pool = pool
        with pool.connection() as conn:
            workflow = conn.execute(INSERT_WORKFLOW, (tenant_id,)).fetchone()
            self.run_id = conn.execute(INSERT_RUN, (tenant_id, workflow[0] if workflow else None)).fetchone()[
                0
            ]

    def step(self) -> uuid.UUID:
        with self._pool.connection() as conn:
            return conn.execute(INSERT_STEP, (self.tenant_id, self.run_id)).fetchone()[0]

    def call(self, tool: str, roles: tuple[str, ...] = ("operator",), **args: Any) -> ToolCall:
        return ToolCall.model_validate(
            {
                "tenant_id": self.tenant_id,
                "principal": {"subject": "user:ops-1", "roles": list(roles)},
                "run_id": self.run_id,
                "step_id": self.step(),
                "tool": tool,
                "args": args,
            }
        )


def start_run(pool: ConnectionPool, plan: str = "pro", **quotas: Any) -> Run:
    tenant_id = f"tools-{uuid.uuid4().hex[:8]}"
    create_tenant(tenant_id, plan=plan, quotas=quotas or None)
    return Run(pool, tenant_id)


@pytest.fixture
def run(db_pool: ConnectionPool) -> Run:
    return start_run(db_pool)


def reservations(client: redis.Redis, prefix: str, tenant_id: str) -> list[str]:
    return list(client.scan_iter(match=f"{prefix}meter:{{{tenant_id}}}:res:*"))


def decisions(pool: ConnectionPool, tenant_id: str) -> list[tuple[bool, list[str]]]:
    with pool.connection() as conn:
        query = "SELECT allow, reasons FROM policy_decisions WHERE tenant_id = %s AND role = 'active'"
        return [(allow, reasons) for allow, reasons in conn.execute(query, (tenant_id,)).fetchall()]


def test_a_refund_retried_after_a_crash_runs_once_and_returns_the_recorded_result(
    make_gateway: Callable[..., ToolGateway],
    server: ToolServer,
    metering: Metering,
    run: Run,
    db_pool: ConnectionPool,
) -> None:
    call = run.call("issue_refund", order_id="o-1001", amount=40)

    with pytest.raises(Crash):
        make_gateway(meter=CrashingMeter(metering)).call(call)
    assert len(server.requests) == 1  # the refund was made; its response never reached the caller

    retried = make_gateway().call(call)

    assert len(server.requests) == 1  # not refunded twice
    assert retried.replayed is True
    assert retried.result == {
        "refund_id": "r-1",
        "order_id": "o-1001",
        "amount": 40.0,
        "card_number": None,
        "customer": {"email": "ada@example.com", "name": "Ada"},
    }
    assert server.requests[0]["key"] == retried.idempotency_key  # the upstream can deduplicate too
    settled = UsageLedger(db_pool).find(run.tenant_id, retried.idempotency_key)
    assert settled is not None and settled.capability == "tool_gateway"  # one reservation, settled once
    assert [allow for allow, _ in decisions(db_pool, run.tenant_id)] == [True, True]  # each attempt checked


def test_a_replayed_step_is_answered_from_the_record_and_a_new_step_runs_again(
    make_gateway: Callable[..., ToolGateway], server: ToolServer, run: Run
) -> None:
    gateway = make_gateway()
    call = run.call("issue_refund", order_id="o-1001", amount=40)

    first, replay = gateway.call(call), gateway.call(call)
    next_step = gateway.call(call.model_copy(update={"step_id": run.step()}))

    assert (first.replayed, replay.replayed, next_step.replayed) == (False, True, False)
    assert first.result == replay.result and first.idempotency_key == replay.idempotency_key
    assert first.duration_ms == replay.duration_ms > 0  # the attempt that made the refund
    assert next_step.result["refund_id"] == "r-2"  # type: ignore[index, call-overload]
    assert len(server.requests) == 2


def test_a_builtin_runs_through_the_same_gate(make_gateway: Callable[..., ToolGateway], run: Run) -> None:
    result = make_gateway().call(run.call("lookup_order", roles=("viewer",), order_id="o-1003"))

    assert result.result["order"]["status"] == "placed"  # type: ignore[index, call-overload]
    assert (result.truncated, result.redacted, result.replayed) == (False, [], False)


@pytest.mark.parametrize(
    ("tool", "args", "error", "message"),
    [
        (
            "issue_refund",
            {"order_id": "o-1", "amount": "lots"},
            InvalidToolArguments,
            "amount: Input should be",
        ),
        (
            "issue_refund",
            {"order_id": "o-1", "amount": 5, "note": "x"},
            InvalidToolArguments,
            "note: Extra inputs",
        ),
        ("refund", {"order_id": "o-1"}, UnknownTool, "known tools: calculator, extract_keywords, generate_r"),
        ("send_email", {"to": "ada@example.com"}, ToolNotAllowed, "may not call http://localhost:"),
        (
            "issue_refund",
            {"order_id": "o-1", "amount": 5, "card_number": "41\x0011"},
            InvalidToolArguments,
            "NUL",
        ),
    ],
)
def test_a_bad_call_is_refused_with_nothing_half_done(
    make_gateway: Callable[..., ToolGateway],
    server: ToolServer,
    run: Run,
    redis_client: redis.Redis,
    redis_key_prefix: str,
    db_pool: ConnectionPool,
    tool: str,
    args: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        make_gateway().call(run.call(tool, **args))

    assert server.requests == []
    assert reservations(redis_client, redis_key_prefix, run.tenant_id) == []
    assert decisions(db_pool, run.tenant_id) == []  # not even a policy check


def test_a_policy_deny_is_policy_denied_and_nothing_runs(
    make_gateway: Callable[..., ToolGateway],
    server: ToolServer,
    run: Run,
    redis_client: redis.Redis,
    redis_key_prefix: str,
    db_pool: ConnectionPool,
) -> None:
    with pytest.raises(
        PolicyDenied, match="user:ops-1 has no role allowed to call tool issue_refund"
    ) as denied:
        make_gateway().call(run.call("issue_refund", roles=("viewer",), order_id="o-1", amount=5))

    assert server.requests == [] and reservations(redis_client, redis_key_prefix, run.tenant_id) == []
    assert decisions(db_pool, run.tenant_id) == [(False, denied.value.reasons)]


def test_a_refund_above_the_threshold_needs_approval_and_nothing_runs(
    make_gateway: Callable[..., ToolGateway], server: ToolServer, run: Run
) -> None:
    with pytest.raises(
        ApprovalRequired, match="issue_refund with amount 250 needs approval above 100"
    ) as needs:
        make_gateway().call(run.call("issue_refund", order_id="o-1", amount=250))

    assert needs.value.approver_roles == ["approver", "admin"]
    assert server.requests == []


def test_card_numbers_never_reach_the_tool_and_result_paths_are_redacted(
    make_gateway: Callable[..., ToolGateway], server: ToolServer, run: Run, policy: PolicyService
) -> None:
    gateway = make_gateway(policy_gate=RedactResults(policy, "$.result.customer.email"))

    result = gateway.call(
        run.call("issue_refund", order_id="o-1001", amount=40, card_number="4111111111111111")
    )

    assert server.requests[0]["body"]["card_number"] == REDACTED  # the egress policy: no pci data to refunds
    assert result.result["card_number"] == REDACTED  # type: ignore[index, call-overload]
    assert result.result["customer"] == {"email": REDACTED, "name": "Ada"}  # type: ignore[index, call-overload]
    assert result.redacted == ["$.args.card_number", "$.result.customer.email"]


def test_a_response_past_the_size_cap_fails_and_is_not_recorded(
    make_gateway: Callable[..., ToolGateway], server: ToolServer, run: Run, db_pool: ConnectionPool
) -> None:
    gateway = make_gateway()
    call = run.call("web_search", q="refunds", size=5000)  # past web_search's 4096 bytes

    for _ in range(2):
        with pytest.raises(ToolResponseTooLarge, match="web_search: the response is larger than 4096 bytes"):
            gateway.call(call)

    assert len(server.requests) == 2  # a failure is not recorded: the retry asked again
    key = idempotency_key(call, gateway.registry.get("web_search").validate(call.args))
    released = UsageLedger(db_pool).find(run.tenant_id, key)
    assert released is not None and released.total_tokens == 0  # the reservation was settled anyway


def test_a_result_past_the_gateway_cap_is_cut_and_flagged(
    make_gateway: Callable[..., ToolGateway], run: Run
) -> None:
    result = make_gateway(max_result_bytes=100).call(run.call("web_search", q="refunds", size=1000))

    assert result.truncated is True
    assert isinstance(result.result, str) and result.result.startswith('{"q":"refunds","text":"xxx')
    assert len(result.result.encode()) == 100


def test_an_attempt_while_another_runs_is_told_to_retry_and_the_refund_happens_once(
    make_gateway: Callable[..., ToolGateway], server: ToolServer, run: Run
) -> None:
    call = run.call("issue_refund", order_id="o-1002", amount=20)
    server.hold.clear()
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(make_gateway().call, call)
        assert server.arrived.wait(10)

        with pytest.raises(
            ToolCallInProgress, match="is running in another attempt; retry after it finishes"
        ):
            make_gateway().call(call)
        server.hold.set()

        assert first.result(10).replayed is False
    assert make_gateway().call(call).replayed is True
    assert len(server.requests) == 1


def test_every_attempt_of_a_call_counts_once_against_the_tools_quota(
    make_gateway: Callable[..., ToolGateway], server: ToolServer, db_pool: ConnectionPool
) -> None:
    run = start_run(db_pool, capabilities={"tool_gateway": {"qps": 0.001, "burst": 1}})
    gateway = make_gateway()
    call = run.call("issue_refund", order_id="o-1001", amount=40)

    gateway.call(call)
    assert gateway.call(call).replayed is True  # the retry is the same call: not charged again
    with pytest.raises(QuotaExceeded) as refused:
        gateway.call(call.model_copy(update={"step_id": run.step()}))

    assert refused.value.scope == "capability.qps"
    assert len(server.requests) == 1

"""LocalStack's Lambda through AOB's aob-subprocess executor: each environment a local Python process.

The functions are the modules in executor_functions/ (one zip, a Handler per test). The last test
starts a LocalStack of its own, to stop it and check that no runtime process outlives it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.conftest import CTL, ROOT

pytestmark = pytest.mark.integration

FUNCTIONS = Path(__file__).with_name("executor_functions")
RUNTIME_MAIN = ROOT / "infra" / "localstack" / "plugin" / "aob_lambda_executor" / "runtime_main.py"
ROLE = "arn:aws:iam::000000000000:role/lambda-role"

Deploy = Callable[..., str]


def _zip(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _invoke(lam: Any, name: str, event: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any]:
    response = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail")
    return response, json.loads(response["Payload"].read())


def _tail(response: dict[str, Any]) -> str:
    return base64.b64decode(response["LogResult"]).decode()


def _eventually(check: Callable[[], Any], timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return result


def _runtime_pids(marker: str) -> set[int]:
    """Live processes running this checkout's runtime_main.py with `marker` in an argument (their
    /opt folder is under LocalStack's state folder and named after the function)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        with suppress(OSError):
            arguments = (entry / "cmdline").read_bytes().decode().split("\0")
            if str(RUNTIME_MAIN) in arguments and any(marker in argument for argument in arguments):
                pids.add(int(entry.name))
    return pids


def _gone(pid: int) -> bool:
    """Exited and reaped: a zombie still has its /proc entry."""
    return not Path(f"/proc/{pid}").exists()


@pytest.fixture(scope="module")
def lam(aws: Callable[[str], Any]) -> Any:
    return aws("lambda")


@pytest.fixture(scope="module")
def deploy(lam: Any) -> Iterator[Deploy]:
    """Creates a python3.13 function from executor_functions/ and waits until it is Active."""
    code = _zip({path.name: path.read_text() for path in FUNCTIONS.glob("*.py")})
    names: list[str] = []

    def deploy(handler: str, *, timeout: int = 3, memory: int = 128, **kwargs: Any) -> str:
        name = f"aob-executor-{uuid.uuid4().hex[:8]}"
        lam.create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=ROLE,
            Handler=handler,
            Code={"ZipFile": code},
            Timeout=timeout,
            MemorySize=memory,
            **kwargs,
        )
        names.append(name)
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})
        return name

    yield deploy
    for name in names:
        with suppress(lam.exceptions.ResourceNotFoundException):
            lam.delete_function(FunctionName=name)
    # LocalStack stops deleted functions' environments in the background; stopping LocalStack
    # before that is done leaves their keep-alive timers holding it up (until ctl.py kills it).
    assert _eventually(lambda: not any(_runtime_pids(f"/{name}-") for name in names))


@pytest.fixture(scope="module")
def describe(deploy: Deploy) -> str:
    return deploy("probe.describe", Environment={"Variables": {"GREETING": "hello"}})


def test_handler_gets_event_context_and_environment(lam: Any, describe: str) -> None:
    response, body = _invoke(lam, describe, {"n": 1})

    assert "FunctionError" not in response
    assert body["event"] == {"n": 1}
    context = body["context"]
    assert context["function_name"] == describe
    assert context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"].endswith(f":function:{describe}")
    assert context["memory_limit_in_mb"] == "128"
    assert context["log_group_name"] == f"/aws/lambda/{describe}"
    assert 0 < context["remaining_ms"] <= 3000
    assert context["client_context"] is None and context["identity"] is None
    env = body["env"]
    assert env["GREETING"] == "hello"
    assert env["AWS_REGION"] == "us-east-1"
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert env["AWS_ACCESS_KEY_ID"]
    assert body["cwd"] == env["LAMBDA_TASK_ROOT"] == body["sys_path"][0]
    assert body["sys_path"][1:3] == [
        f"{Path(env['LAMBDA_TASK_ROOT']).parent}/opt/python/lib/python3.13/site-packages",
        f"{Path(env['LAMBDA_TASK_ROOT']).parent}/opt/python",
    ]
    assert "START RequestId: " in _tail(response)


def test_runtime_offers_only_stdlib_and_boto3(lam: Any, describe: str) -> None:
    _, body = _invoke(lam, describe)

    # Neither LocalStack's venv nor the test venv leaks into the function's interpreter.
    assert body["importable"] == {"boto3": True, "localstack": False, "pytest": False, "pydantic": False}


def test_missing_dependency_fails_init_as_import_module_error(lam: Any, deploy: Deploy) -> None:
    response, body = _invoke(lam, deploy("needs_pydantic.handler"))

    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ImportModuleError"
    assert body["errorMessage"] == "Unable to import module 'needs_pydantic': No module named 'pydantic'"


def test_layers_are_importable_later_ones_overriding_earlier(lam: Any, deploy: Deploy) -> None:
    contents = [
        {
            "python/aob_probe_layer/__init__.py": "VALUE = 'first'\n",
            "python/aob_probe_layer/only_in_first.py": "PRESENT = True\n",
        },
        {"python/aob_probe_layer/__init__.py": "VALUE = 'second'\n"},
    ]
    layers = [
        lam.publish_layer_version(
            LayerName=f"aob-executor-{uuid.uuid4().hex[:8]}",
            Content={"ZipFile": _zip(files)},
            CompatibleRuntimes=["python3.13"],
        )
        for files in contents
    ]
    try:
        name = deploy("probe.use_layer", Layers=[layer["LayerVersionArn"] for layer in layers])
        response, body = _invoke(lam, name)
    finally:
        for layer in layers:
            lam.delete_layer_version(LayerName=layer["LayerArn"], VersionNumber=layer["Version"])

    assert "FunctionError" not in response, body
    assert body["value"] == "second"
    assert body["only_in_first"] is True
    assert body["file"].endswith("/opt/python/aob_probe_layer/__init__.py")


def test_handler_exception_is_unhandled_error_shaped_as_on_aws(lam: Any, deploy: Deploy) -> None:
    response, body = _invoke(lam, deploy("probe.deny"), {"tool": "rm"})

    assert response["FunctionError"] == "Unhandled"
    assert list(body) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert body["errorType"] == "PolicyDenied"
    assert body["errorMessage"] == "tool rm is not allowed"
    assert body["requestId"]
    assert body["stackTrace"][-1].startswith('  File "') and "probe.py" in body["stackTrace"][-1]
    assert "in deny" in body["stackTrace"][-1]
    assert "[ERROR] PolicyDenied: tool rm is not allowed" in _tail(response)


def test_timeout_is_sandbox_timedout_and_replaces_the_process(lam: Any, deploy: Deploy) -> None:
    name = deploy("probe.sleep", timeout=1)
    _, before = _invoke(lam, name, {"seconds": 0})

    response, body = _invoke(lam, name, {"seconds": 30})

    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert body["errorMessage"].startswith("RequestId: ")
    assert body["errorMessage"].endswith(" Error: Task timed out after 1.00 seconds")
    logs = _tail(response)
    assert "sleeping 30 s" in logs and "Task timed out after 1.00 seconds" in logs
    assert _eventually(lambda: _gone(before["pid"]))
    _, after = _invoke(lam, name, {"seconds": 0})
    assert after["pid"] != before["pid"]


def test_memory_overrun_is_out_of_memory(lam: Any, deploy: Deploy) -> None:
    name = deploy("probe.allocate", memory=128)

    response, body = _invoke(lam, name, {"mb": 200})

    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.OutOfMemory"
    assert "MemorySize is 128 MB" in body["errorMessage"]
    response, body = _invoke(lam, name, {"mb": 1})
    assert "FunctionError" not in response and body["allocated_mb"] == 1


def test_runtime_exit_is_exit_error_and_replaces_the_process(lam: Any, deploy: Deploy) -> None:
    name = deploy("probe.exit_process")
    _, before = _invoke(lam, name)

    response, body = _invoke(lam, name, {"status": 2})

    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.ExitError"
    assert body["errorMessage"].endswith(" Error: Runtime exited with error: exit status 2")
    _, after = _invoke(lam, name)
    assert after["pid"] != before["pid"]


def test_non_python_runtime_fails_with_a_clear_reason(lam: Any) -> None:
    name = f"aob-executor-{uuid.uuid4().hex[:8]}"
    lam.create_function(
        FunctionName=name,
        Runtime="nodejs22.x",
        Role=ROLE,
        Handler="index.handler",
        Code={"ZipFile": _zip({"index.mjs": "export const handler = async () => 1;\n"})},
    )
    config = _eventually(
        lambda: (c := lam.get_function_configuration(FunctionName=name))["State"] != "Pending" and c
    )
    # Not deleted: LocalStack cannot delete a function whose version failed to start.

    assert config["State"] == "Failed"
    assert "runtime nodejs22.x is not supported by the aob-subprocess executor" in config["StateReason"]


def test_concurrent_invocations_run_in_separate_environments(lam: Any, deploy: Deploy) -> None:
    name = deploy("probe.sleep")

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _invoke(lam, name, {"seconds": 1})[1], range(4)))

    assert len({result["pid"] for result in results}) == 4
    # Every invocation was running while every other one was: they overlapped, not queued.
    assert max(result["started"] for result in results) < min(result["ended"] for result in results)


def test_logs_reach_cloudwatch(lam: Any, aws: Callable[[str], Any], deploy: Deploy) -> None:
    name = deploy("probe.shout")
    token = uuid.uuid4().hex

    response, _ = _invoke(lam, name, {"token": token})

    request_id = response["ResponseMetadata"]["RequestId"]
    logs = aws("logs")

    def messages() -> list[str]:
        with suppress(logs.exceptions.ResourceNotFoundException):
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
            found = [event["message"] for event in events]
            return found if any(message.startswith("REPORT") for message in found) else []
        return []

    found = _eventually(messages)
    assert f"printed {token}\n" in found
    assert f"child process {token}\n" in found
    assert any(m.startswith("[WARNING]\t") and m.endswith(f"\t{request_id}\tlogged {token}\n") for m in found)
    assert any(m.startswith(f"START RequestId: {request_id}") for m in found)
    assert any(m.startswith(f"END RequestId: {request_id}") for m in found)


def test_deleting_a_function_stops_its_environment(lam: Any, deploy: Deploy) -> None:
    name = deploy("probe.sleep")
    _, body = _invoke(lam, name, {"seconds": 0})
    assert not _gone(body["pid"])

    lam.delete_function(FunctionName=name)

    assert _eventually(lambda: _gone(body["pid"]))


@pytest.fixture
def own_localstack(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """A second LocalStack (own port and state folder) that a test may stop without disturbing
    the session's one; yields the environment for ctl.py and its endpoint."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "venvs").symlink_to(Path(os.environ.get("AOB_STATE_DIR", ROOT / ".state")) / "venvs")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | {"AOB_STATE_DIR": str(state), "AOB_LOCALSTACK_PORT": str(port)}
    subprocess.run([sys.executable, str(CTL), "up"], env=env, check=True)
    try:
        yield env, f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([sys.executable, str(CTL), "down"], env=env, check=True)


def test_localstack_down_leaves_no_runtime_process(own_localstack: tuple[dict[str, str], str]) -> None:
    env, endpoint = own_localstack
    state = env["AOB_STATE_DIR"]
    lam = boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    code = _zip({path.name: path.read_text() for path in FUNCTIONS.glob("*.py")})
    for handler in ("probe.describe", "probe.sleep"):
        name = f"aob-executor-{uuid.uuid4().hex[:8]}"
        lam.create_function(
            FunctionName=name, Runtime="python3.13", Role=ROLE, Handler=handler, Code={"ZipFile": code}
        )
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1})
        _invoke(lam, name, {"seconds": 0})
    assert len(_runtime_pids(state)) == 2

    subprocess.run([sys.executable, str(CTL), "down"], env=env, check=True)

    assert _eventually(lambda: not _runtime_pids(state), timeout_s=5), _runtime_pids(state)

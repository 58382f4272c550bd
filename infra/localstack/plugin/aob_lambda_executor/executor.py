"""LocalStack runtime executor running each Lambda execution environment as a local subprocess.

One `AobSubprocessRuntimeExecutor` is one execution environment: one runtime process
(runtime_main.py on the Lambda runtime interpreter) at a time. LocalStack's assignment service
starts as many environments as there are concurrent invocations; nothing here is shared between
them. The executor enforces the function's timeout and replaces the process after a timeout, a
runtime exit or running out of memory, as AWS resets a sandbox.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from concurrent.futures import InvalidStateError
from pathlib import Path

from localstack import config
from localstack.http import Response
from localstack.services.lambda_.invocation.executor_endpoint import ExecutorEndpoint, StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException, RuntimeExecutor
from werkzeug import Request

from aob_lambda_executor import _sandbox, _settings, _versions
from aob_lambda_executor._process import OutputLog, RuntimeProcess

LOG = logging.getLogger(__name__)

RUNTIME_MAIN = Path(__file__).with_name("runtime_main.py")
LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 0.5


class _Endpoint(ExecutorEndpoint):
    """LocalStack's executor endpoint; the runtime's ready call also says which port it serves."""

    def status_ready(self, request: Request, executor_id: str) -> Response:
        self.container_port = int(request.get_json(force=True)["port"])
        return super().status_ready(request, executor_id)


class AobSubprocessRuntimeExecutor(RuntimeExecutor):
    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._endpoint = _Endpoint(id, container_address=LOOPBACK, container_port=None)
        self._layout = _versions.VersionLayout.of(function_version)
        self._tmp_dir = _settings.work_dir() / "environments" / id
        self._log = OutputLog()
        self._env: dict[str, str] = {}
        # Guards which process is current: the timeout timer and exit callbacks race with invoke.
        self._lock = threading.Lock()
        self._process: RuntimeProcess | None = None
        self._request_id: str | None = None
        self._invoke_started = 0.0
        self._stopped = False

    # Version lifecycle

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        _versions.prepare(function_version)

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        _versions.cleanup(function_version)

    @classmethod
    def validate_environment(cls) -> bool:
        try:
            _settings.runtime_python()
        except LambdaRuntimeException as exc:
            LOG.warning("aob-subprocess Lambda executor cannot run functions: %s", exc)
            return False
        return True

    # Environment lifecycle

    def start(self, env_vars: dict[str, str]) -> None:
        self._tmp_dir.mkdir(parents=True, exist_ok=True)
        self._env = self._environment(env_vars)
        self._spawn()
        self._endpoint.wait_for_startup()

    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        if not self._alive():
            self._restart()
        request_id = payload["invoke-id"]
        timeout_s = float(self.function_version.config.timeout)
        timer = threading.Timer(timeout_s, self._time_out, args=(request_id, timeout_s))
        timer.daemon = True
        with self._lock:
            self._request_id, self._invoke_started = request_id, time.monotonic()
        timer.start()
        try:
            result = self._endpoint.invoke(payload)
        finally:
            timer.cancel()
            # Under the lock: a late timer or exit callback must not settle the next invocation.
            with self._lock:
                self._request_id = None
        if _sandbox.error_type(result) in _sandbox.FATAL_ERRORS:
            self._replace_process()
        return result

    def stop(self) -> None:
        with self._lock:
            self._stopped = True  # a restart racing with this must not leave a process behind
        self._replace_process(grace_s=STOP_GRACE_S)
        try:
            self._endpoint.shutdown()
        except Exception as exc:  # never started, or already shut down
            LOG.debug("Error shutting down executor endpoint %s: %s", self.id, exc)
        shutil.rmtree(self._tmp_dir, ignore_errors=True)

    def get_logs(self) -> str:
        return self._log.text()

    # Addresses

    def get_address(self) -> str:
        return LOOPBACK

    def get_endpoint_from_executor(self) -> str:
        host = config.GATEWAY_LISTEN[0].host
        return LOOPBACK if host in ("", "0.0.0.0", "::", "[::]") else host

    def get_runtime_endpoint(self) -> str:
        return (
            f"http://{self.get_endpoint_from_executor()}:{config.GATEWAY_LISTEN[0].port}"
            f"{self._endpoint.get_endpoint_prefix()}"
        )

    # Internals

    def _environment(self, env_vars: dict[str, str]) -> dict[str, str]:
        """LocalStack's variables (with the function's own) on a clean base: nothing of LocalStack's
        process (its PYTHONPATH, venv, credentials) reaches the function."""
        env = {key: str(value) for key, value in env_vars.items() if value is not None}
        task, opt = self._layout.task_dir, self._layout.opt_dir
        env.update(
            LAMBDA_TASK_ROOT=str(task),
            LAMBDA_RUNTIME_DIR=str(RUNTIME_MAIN.parent),
            AWS_EXECUTION_ENV=f"AWS_Lambda_{self.function_version.config.runtime}",
        )
        defaults = {
            "PATH": os.pathsep.join(
                [
                    str(_settings.runtime_python().parent),
                    str(opt / "bin"),
                    "/usr/local/bin",
                    "/usr/bin",
                    "/bin",
                ]
            ),
            "LD_LIBRARY_PATH": os.pathsep.join([str(task), str(task / "lib"), str(opt / "lib")]),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self._tmp_dir),
            # Not the host's home: its ~/.aws must not configure the function's SDK.
            "HOME": str(self._tmp_dir),
            "AWS_REGION": self.function_version.id.region,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }
        if not config.LAMBDA_DISABLE_AWS_ENDPOINT_URL:
            defaults["AWS_ENDPOINT_URL"] = (
                f"http://{self.get_endpoint_from_executor()}:{config.GATEWAY_LISTEN[0].port}"
            )
        return defaults | env

    def _spawn(self) -> None:
        argv = [str(_settings.runtime_python()), "-P", "-s", str(RUNTIME_MAIN), str(self._layout.opt_dir)]
        with self._lock:
            if self._stopped:
                raise LambdaRuntimeException(f"Execution environment {self.id} is stopped")
            self._endpoint.start()  # (re-)registers and arms a fresh startup future
            self._process = RuntimeProcess(argv, self._env, self._layout.task_dir, self._log, self._on_exit)
            process = self._process
        process.watch()

    def _restart(self) -> None:
        """A fresh runtime in place of one that is gone: AWS's re-init on the next invoke."""
        self._replace_process()
        self._spawn()
        startup = self._endpoint.startup_future
        assert startup is not None  # armed by _spawn
        limit_s = config.LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT
        try:
            startup.result(timeout=limit_s)
        except TimeoutError as exc:
            raise LambdaRuntimeException(
                f"Execution environment {self.id} was not ready {limit_s} s after a restart "
                "(LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT)"
            ) from exc

    def _alive(self) -> bool:
        process = self._process
        return process is not None and process.alive()

    def _replace_process(self, grace_s: float = 0) -> None:
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            process.stop(grace_s)

    def _time_out(self, request_id: str, timeout_s: float) -> None:
        output = self._log.since(f"START RequestId: {request_id}")
        result = _sandbox.timed_out(request_id, timeout_s, output, self.function_version.config.memory_size)
        with self._lock:
            if self._request_id != request_id or not _settle(self._endpoint, result):
                return  # the runtime answered in time
            if self._process is not None:
                self._process.kill()  # stops the work now; invoke() then replaces the process

    def _on_exit(self, process: RuntimeProcess, returncode: int) -> None:
        with self._lock:
            if process is not self._process:
                return  # replaced on purpose
            startup = self._endpoint.startup_future
            if startup is not None and not startup.done():
                with contextlib.suppress(InvalidStateError):
                    startup.set_exception(
                        StatusErrorException(
                            "Environment startup failed", payload=_sandbox.exited_during_init(returncode)
                        )
                    )
            elif (request_id := self._request_id) is not None:
                output = self._log.since(f"START RequestId: {request_id}")
                duration_ms = (time.monotonic() - self._invoke_started) * 1000
                memory_mb = self.function_version.config.memory_size
                _settle(
                    self._endpoint, _sandbox.exited(request_id, returncode, duration_ms, output, memory_mb)
                )


def _settle(endpoint: ExecutorEndpoint, result: InvocationResult) -> bool:
    """Completes the pending invocation unless the runtime's own answer came first."""
    future = endpoint.invocation_future
    if future is None:
        return False
    try:
        future.set_result(result)
    except InvalidStateError:
        return False
    return True

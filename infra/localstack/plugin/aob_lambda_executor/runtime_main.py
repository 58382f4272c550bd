"""AOB's Lambda runtime: one Python execution environment, driven by LocalStack's executor endpoint.

The aob-subprocess executor runs this file with the function's environment as

    <runtime python> -P -s runtime_main.py OPT_DIR LIFELINE_FD

Standard library only: the function's interpreter holds what AWS's python runtime holds (the
standard library and boto3), so a dependency missing from the package or its layers fails here
as it would on AWS. The protocol is the one LocalStack's Go init speaks:

- init: import the handler, then POST {LOCALSTACK_RUNTIME_ENDPOINT}/status/{runtime id}/ready
  with {"port": N} (the port LocalStack posts invocations to), or .../error with the init error;
- LocalStack POSTs {"invoke-id", "invoked-function-arn", "payload", "trace-id"} to /invoke here;
- per invocation: POST .../invocations/{request id}/logs {"logs": ...}, then .../response with
  the result or .../error with {"errorMessage", "errorType", "requestId", "stackTrace"}.

Invocations run one at a time, on the main thread, as on AWS. Timeouts are enforced by the
executor, which kills this process; memory by a peak-RSS check after each invocation (no rlimit:
allocators such as rego-cpp's snmalloc reserve address space up front and fail under RLIMIT_DATA,
while AWS limits resident memory only).
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import math
import os
import queue
import signal
import socketserver
import sys
import sysconfig
import threading
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

_STARTED = time.monotonic()
_MB = 1024 * 1024
_DEFAULT_MAX_RESPONSE_BYTES = 6 * _MB + 100
_HERE = os.path.abspath(__file__)

Handler = Callable[[Any, "LambdaContext"], Any]


class Fault(Exception):
    """An error the runtime itself reports (`Runtime.*`), shaped as AWS's python runtime does."""

    def __init__(self, error_type: str, message: str, stack_trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.stack_trace = stack_trace or []

    @classmethod
    def from_exception(cls, exc: BaseException) -> Fault:
        return cls(type(exc).__name__, str(exc), _user_frames(exc))

    def payload(self, request_id: str = "") -> dict[str, Any]:
        return {
            "errorMessage": self.message,
            "errorType": self.error_type,
            "requestId": request_id,
            "stackTrace": self.stack_trace,
        }

    def log_lines(self) -> str:
        lines = [
            f"[ERROR] {self.error_type}: {self.message}" if self.message else f"[ERROR] {self.error_type}"
        ]
        if self.stack_trace:
            lines.append("Traceback (most recent call last):")
            lines.extend(line for frame in self.stack_trace for line in frame.splitlines())
        return "\n".join(lines)


def _user_frames(exc: BaseException) -> list[str]:
    """The traceback from the first frame outside this file on, as AWS leaves out its bootstrap."""
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and frames[0].filename == _HERE:
        frames.pop(0)
    return traceback.format_list(frames)


class LambdaContext:
    """The context object AWS's python runtime passes to the handler."""

    def __init__(self, request_id: str, invoked_function_arn: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        # A string, as on AWS (the runtime copies the environment variable).
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


class Output:
    """Captures fd 1 and 2, so print, logging, C code and child processes all reach the logs.

    A thread reads the pipe behind both: each complete line goes on to the environment's own log
    (the executor reads it, and uses it when it has to report a timeout itself) and into the
    current invocation's log, which `take` returns once everything written so far has arrived.
    """

    def __init__(self) -> None:
        self._environment_log = os.fdopen(os.dup(1), "wb")
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 1)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                stream.reconfigure(line_buffering=True)
        self._read_fd = read_fd
        self._marker = f"\0aob-flush-{uuid.uuid4().hex}".encode()
        self._lines: list[bytes] = []
        self._lock = threading.Lock()
        self._arrived = threading.Event()
        _daemon(self._pump, "output")

    def sync(self) -> None:
        """Returns once everything written so far has been read from the pipe."""
        sys.stdout.flush()
        sys.stderr.flush()
        self._arrived.clear()
        os.write(1, self._marker + b"\n")
        self._arrived.wait(timeout=5)

    def take(self) -> str:
        """Everything written since the last call (the init output, first time round)."""
        self.sync()
        with self._lock:
            lines, self._lines = self._lines, []
        return b"".join(lines).decode("utf-8", "replace")

    def diagnostic(self, message: str) -> None:
        """A line for the environment log only: the runtime's own trouble, not the function's."""
        with self._lock:
            self._write_environment_log(f"[aob-runtime] {message}\n".encode())

    def _pump(self) -> None:
        pending = b""
        while chunk := os.read(self._read_fd, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._line(line)

    def _line(self, line: bytes) -> None:
        flushed = line.endswith(self._marker)
        if flushed:
            line = line[: -len(self._marker)]
        if line or not flushed:
            with self._lock:
                self._lines.append(line + b"\n")
                self._write_environment_log(line + b"\n")
        if flushed:
            self._arrived.set()

    def _write_environment_log(self, data: bytes) -> None:
        self._environment_log.write(data)
        self._environment_log.flush()


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


_REQUEST_ID = _RequestIdFilter()


def _install_logging() -> None:
    """The root handler AWS's runtime installs: `[LEVEL]\\ttime\\trequest id\\tmessage` on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_REQUEST_ID)
    root = logging.getLogger()
    root.addHandler(handler)
    if level := os.environ.get("AWS_LAMBDA_LOG_LEVEL"):
        root.setLevel(level.upper())


class LocalStack:
    """Calls to LocalStack's executor endpoint for this environment."""

    def __init__(self, endpoint: str, runtime_id: str) -> None:
        self._endpoint = endpoint.rstrip("/")
        self._runtime_id = runtime_id
        # The function's own HTTP(S)_PROXY settings must not reroute these calls.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def status(self, outcome: str, body: dict[str, Any]) -> None:
        self._post(f"/status/{self._runtime_id}/{outcome}", json.dumps(body).encode())

    def result(self, request_id: str, logs: str, outcome: str, body: bytes) -> None:
        self._post(f"/invocations/{request_id}/logs", json.dumps({"logs": logs}).encode())
        self._post(f"/invocations/{request_id}/{outcome}", body)

    def _post(self, path: str, body: bytes) -> None:
        request = urllib.request.Request(
            self._endpoint + path, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with self._opener.open(request, timeout=30) as response:
            response.read()


def load_handler(spec: str) -> Handler:
    """Imports `module.function` as AWS's python runtime does, with its error types."""
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as exc:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}") from exc
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise Fault(
            "Runtime.BuiltInModuleConflict", f"Cannot use built-in module {module_name} as a handler module"
        )
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise Fault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise Fault(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", trace
        ) from exc
    handler = getattr(module, function_name, None)
    if handler is None:
        # AWS reports this on each invoke, not at init.
        missing = Fault(
            "Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'"
        )

        def handler(event: Any, context: LambdaContext) -> Any:
            raise missing

    return handler


class Runtime:
    """Runs invocations from the queue the HTTP server fills, and reports each to LocalStack."""

    def __init__(self, handler: Handler, output: Output, localstack: LocalStack, init_ms: float) -> None:
        self._handler = handler
        self._output = output
        self._localstack = localstack
        self._init_ms: float | None = init_ms
        self._timeout_s = float(os.environ.get("AWS_LAMBDA_FUNCTION_TIMEOUT", "3"))
        self._memory_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
        self._max_response = int(os.environ.get("LOCALSTACK_MAX_PAYLOAD_SIZE") or _DEFAULT_MAX_RESPONSE_BYTES)
        self.invocations: queue.Queue[bytes] = queue.Queue()

    def serve_forever(self) -> None:
        while True:
            invocation = json.loads(self.invocations.get())
            try:
                self._invoke(invocation)
            except OSError as exc:  # LocalStack unreachable: nothing to report to
                self._output.diagnostic(f"could not report invocation {invocation.get('invoke-id')}: {exc}")

    def _invoke(self, invocation: dict[str, Any]) -> None:
        request_id = invocation["invoke-id"]
        started = time.monotonic()
        _REQUEST_ID.request_id = request_id
        os.environ["_X_AMZN_TRACE_ID"] = invocation.get("trace-id") or ""
        print(f"START RequestId: {request_id} Version: {os.environ.get('AWS_LAMBDA_FUNCTION_VERSION')}")
        # In the environment log before the function runs: the executor's timeout and crash
        # reports take the invocation's output from there.
        self._output.sync()
        context = LambdaContext(request_id, invocation["invoked-function-arn"], started + self._timeout_s)
        try:
            body, fault = self._run(invocation.get("payload") or "", context), None
        except Fault as exc:
            body, fault = b"", exc
        except MemoryError:
            body, fault = b"", _out_of_memory(request_id, "an allocation failed")
        duration_ms = (time.monotonic() - started) * 1000
        used_mb = _peak_rss_mb()
        if fault is None and used_mb > self._memory_mb:
            # On AWS the sandbox would have been killed on the way; the executor recycles this one.
            fault = _out_of_memory(request_id, f"{used_mb} MB used")
        if fault is not None:
            print(fault.log_lines())
        print(f"END RequestId: {request_id}")
        print(self._report(request_id, duration_ms, used_mb, fault))
        logs = self._output.take()
        if fault is None:
            self._localstack.result(request_id, logs, "response", body)
        else:
            self._localstack.result(request_id, logs, "error", json.dumps(fault.payload(request_id)).encode())

    def _run(self, payload: str, context: LambdaContext) -> bytes:
        try:
            event = json.loads(payload) if payload else {}
        except ValueError as exc:
            raise Fault("Runtime.UnmarshalError", f"Unable to unmarshal input: {exc}") from exc
        try:
            result = self._handler(event, context)
        except (Fault, MemoryError):
            raise
        except Exception as exc:
            raise Fault.from_exception(exc) from exc
        try:
            body = json.dumps(result).encode()
        except (TypeError, ValueError) as exc:
            raise Fault("Runtime.MarshalError", f"Unable to marshal response: {exc}") from exc
        if len(body) > self._max_response:
            raise Fault(
                "Function.ResponseSizeTooLarge",
                f"Response payload size exceeded maximum allowed payload size ({self._max_response} bytes).",
            )
        return body

    def _report(self, request_id: str, duration_ms: float, used_mb: int, fault: Fault | None) -> str:
        fields = [
            f"REPORT RequestId: {request_id}",
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(duration_ms)} ms",
            f"Memory Size: {self._memory_mb} MB",
            f"Max Memory Used: {used_mb} MB",
        ]
        if self._init_ms is not None:
            fields.append(f"Init Duration: {self._init_ms:.2f} ms")
            self._init_ms = None
        if fault is not None:
            fields += ["Status: error", f"Error Type: {fault.error_type}"]
        return "\t".join(fields)


def _peak_rss_mb() -> int:
    """Peak resident memory of this process (getrusage's ru_maxrss would include the spawner's)."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) // 1024
    return 0


def _out_of_memory(request_id: str, detail: str) -> Fault:
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    return Fault(
        "Runtime.OutOfMemory",
        f"RequestId: {request_id} Error: Runtime exited: out of memory ({detail}; MemorySize is {memory} MB)",
    )


def _serve_invocations(runtime: Runtime) -> int:
    """Accepts LocalStack's POST /invoke on a free loopback port; returns the port."""

    class InvokeHandler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/invoke":
                self.send_error(404)
                return
            runtime.invocations.put(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    # TCPServer, not HTTPServer: HTTPServer resolves its own host name on bind.
    server = socketserver.TCPServer(("127.0.0.1", 0), InvokeHandler)
    _daemon(server.serve_forever, "invoke-server")
    return server.server_address[1]


def _watch_lifeline(fd: int) -> None:
    """The executor holds the other end: when LocalStack goes, however it goes, so does this group."""

    def watch() -> None:
        while os.read(fd, 1):
            pass
        os.killpg(os.getpgrp(), signal.SIGKILL)

    os.set_inheritable(fd, False)  # the function's own child processes have no use for it
    _daemon(watch, "lifeline")


def _daemon(target: Callable[[], None], name: str) -> None:
    threading.Thread(target=target, name=f"aob-runtime-{name}", daemon=True).start()


def _set_sys_path(task_root: str, opt_dir: str) -> None:
    """Search order of AWS's python runtime: task root, layers, runtime site-packages, stdlib."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    sys.path[:0] = [
        task_root,
        os.path.join(opt_dir, "python", "lib", version, "site-packages"),
        os.path.join(opt_dir, "python"),
        sysconfig.get_path("purelib"),
    ]


def main(argv: list[str]) -> int:
    opt_dir, lifeline_fd = argv[1], int(argv[2])
    _watch_lifeline(lifeline_fd)
    output = Output()
    localstack = LocalStack(os.environ["LOCALSTACK_RUNTIME_ENDPOINT"], os.environ["LOCALSTACK_RUNTIME_ID"])
    _set_sys_path(os.environ["LAMBDA_TASK_ROOT"], opt_dir)
    _install_logging()
    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Fault as fault:
        return _init_failed(localstack, output, fault)
    except Exception as exc:
        return _init_failed(localstack, output, Fault.from_exception(exc))
    runtime = Runtime(handler, output, localstack, (time.monotonic() - _STARTED) * 1000)
    localstack.status("ready", {"port": _serve_invocations(runtime)})
    runtime.serve_forever()
    return 0


def _init_failed(localstack: LocalStack, output: Output, fault: Fault) -> int:
    print(fault.log_lines())
    output.sync()  # into the environment log before this process exits
    localstack.status("error", fault.payload())
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

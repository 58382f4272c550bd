"""One runtime subprocess: its own process group, its output kept, a lifeline to LocalStack."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

_KEPT_LINES = 10_000


class OutputLog:
    """The last lines an execution environment wrote, across the processes it has run."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=_KEPT_LINES)
        self._lock = threading.Lock()

    def append(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def since(self, prefix: str) -> str:
        """The lines from the last one starting with `prefix` on (all kept lines if none does)."""
        with self._lock:
            lines = list(self._lines)
        for index in range(len(lines) - 1, -1, -1):
            if lines[index].startswith(prefix):
                return "".join(lines[index:])
        return "".join(lines)


class RuntimeProcess:
    """A runtime started in a new session, so that signals reach it and every child it made.

    The process gets the read end of a pipe whose write end only this object holds: when it is
    closed (stop, or LocalStack dying however it dies) the runtime kills its own process group.
    A thread reads the process's output into `log` and, at exit, reaps it and calls `on_exit`.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: Path,
        log: OutputLog,
        on_exit: Callable[[RuntimeProcess, int], None],
    ) -> None:
        lifeline, self._lifeline = os.pipe()
        # A bare fd, not popen.stdout: should LocalStack exit while the reading thread blocks in a
        # file object's read, that object's lock could stall or abort the interpreter's cleanup.
        self._output, output = os.pipe()
        try:
            self._popen = subprocess.Popen(
                [*argv, str(lifeline)],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=(lifeline,),
                start_new_session=True,
            )
        except BaseException:
            os.close(self._lifeline)
            os.close(self._output)
            raise
        finally:
            os.close(lifeline)
            os.close(output)
        self._log = log
        self._on_exit = on_exit
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def watch(self) -> None:
        """Starts following the output; `on_exit` is called from then on."""
        threading.Thread(target=self._follow, name=f"aob-lambda-{self.pid}", daemon=True).start()

    def alive(self) -> bool:
        return self._popen.poll() is None

    def kill(self) -> None:
        """SIGKILL to the whole group, without waiting (the output thread reaps it)."""
        self._signal(signal.SIGKILL)

    def stop(self, grace_s: float) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left after `grace_s`; reaps the runtime."""
        if grace_s > 0:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(grace_s)
        # Also for children that outlived the runtime: the group id stays theirs until they go.
        self._signal(signal.SIGKILL)
        self._popen.wait()
        self._close_lifeline()

    def _close_lifeline(self) -> None:
        with self._lock:
            fd, self._lifeline = self._lifeline, -1
        if fd >= 0:
            os.close(fd)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signum)

    def _follow(self) -> None:
        pending = b""
        while chunk := os.read(self._output, 65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._log.append(line.decode("utf-8", "replace") + "\n")
        os.close(self._output)
        returncode = self._popen.wait()
        self._close_lifeline()
        self._on_exit(self, returncode)

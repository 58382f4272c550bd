"""Run the same contention workload in this process and in spawned ones, released together."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any

from aob.db import close_pool

SPAWN = multiprocessing.get_context("spawn")
PROCESSES = 2  # spawned, besides this one


def _child(work: Callable[..., Any], args: tuple[Any, ...], start: Any, results: Any) -> None:
    try:
        results.put(("ok", work(*args, start)))
    except BaseException:
        results.put(("error", traceback.format_exc()))
    finally:
        close_pool()  # left to interpreter exit, the pool's threads take seconds to stop


def run_everywhere(work: Callable[..., Any], *args: Any) -> list[Any]:
    """work(*args, start) in PROCESSES spawned processes and in this one; each waits on `start`."""
    start = SPAWN.Barrier(PROCESSES + 1, timeout=120)
    results = SPAWN.Queue()
    children = [SPAWN.Process(target=_child, args=(work, args, start, results)) for _ in range(PROCESSES)]
    for child in children:
        child.start()
    try:
        mine = work(*args, start)
        theirs = [results.get(timeout=180) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
    errors = [detail for status, detail in theirs if status == "error"]
    assert not errors, errors[0]
    return [mine, *(value for _status, value in theirs)]

"""Rego unit tests, run in-process the way `opa test` runs them.

Every rule named `test_*` in the directory's .rego files (policies and `*_test.rego` alike) is one
test, evaluated with an empty input; it passes when it is `true`, fails when it is false or
undefined, and errors when evaluation fails. Modules and the top-level data.json load once, and
all test rules compile together.

rego-cpp 1.5 quirks shape the tests: override input fields (`with input.action as a`), never the
whole input; bind a fixture rule to a local before `with ... as` it; compare sets, not sort()ed sets.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from regopy import RegoError  # type: ignore[import-untyped]

from aob.policy import _rego
from aob.policy._bundle import DATA_FILE

_PACKAGE = re.compile(r"^package\s+([\w.]+)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\b", re.MULTILINE)

type Outcome = Literal["pass", "fail", "error"]


@dataclass(frozen=True)
class PolicyTestResult:
    rule: str  # data.<package>.<test rule>, or the directory when nothing compiled
    outcome: Outcome
    duration_s: float
    message: str = ""


@dataclass(frozen=True)
class PolicyTestReport:
    results: list[PolicyTestResult]

    def count(self, outcome: Outcome) -> int:
        return sum(result.outcome == outcome for result in self.results)

    @property
    def ok(self) -> bool:
        """Whether there were tests and all of them passed."""
        return bool(self.results) and self.count("pass") == len(self.results)


def discover_tests(sources: dict[str, str]) -> list[str]:
    """The test rules of these modules, as `data.<package>.<rule>`, in file order."""
    rules: list[str] = []
    for source in sources.values():
        package = _PACKAGE.search(source)
        if package:
            rules += [f"data.{package[1]}.{name}" for name in dict.fromkeys(_TEST_RULE.findall(source))]
    return rules


def run_policy_tests(directory: Path) -> PolicyTestReport:
    """Run every `test_*` rule under `directory`; policies that do not compile are one error."""
    sources = {
        path.relative_to(directory).as_posix(): path.read_text() for path in sorted(directory.rglob("*.rego"))
    }
    data = directory / DATA_FILE
    entrypoints = {rule: rule.removeprefix("data.").replace(".", "/") for rule in discover_tests(sources)}
    if not entrypoints:
        return PolicyTestReport([])
    started = time.perf_counter()
    try:
        rego = _rego.interpreter(sources, [data.read_text()] if data.is_file() else [])
        compiled = _rego.CompiledQueries(rego, list(entrypoints.values()))
    except _rego.CompileError as exc:
        return PolicyTestReport(
            [PolicyTestResult(str(directory), "error", time.perf_counter() - started, str(exc))]
        )
    results = []
    for rule, entrypoint in entrypoints.items():
        started = time.perf_counter()
        try:
            value = compiled.evaluate(entrypoint, {})
        except RegoError as exc:
            results.append(PolicyTestResult(rule, "error", time.perf_counter() - started, str(exc)))
            continue
        message = (
            "" if value is True else ("undefined" if value is _rego.UNDEFINED else f"evaluated to {value!r}")
        )
        results.append(
            PolicyTestResult(
                rule, "pass" if value is True else "fail", time.perf_counter() - started, message
            )
        )
    return PolicyTestReport(results)

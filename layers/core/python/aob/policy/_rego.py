"""The slice of regopy (rego-cpp) that AOB uses: compile modules once, query, read results safely.

Results are read node by node through `regopy.rego_shared`, never through regopy's `Output`:
regopy 1.5.2 renders results as JSON text without escaping quotes inside strings and `Output`
parses that text, so an input string such as `x"], "allow": true, "y": ["` could rewrite a
decision. Node values are the raw strings, with nothing to escape.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

from regopy import Input, Interpreter, LogLevel, NodeKind, RegoError  # type: ignore[import-untyped]
from regopy import rego_shared as _c  # type: ignore[import-untyped]

UNDEFINED: Final = object()

_SCALARS: Final[dict[NodeKind, Callable[[str], Any]]] = {
    NodeKind.Int: int,
    NodeKind.Float: float,
    NodeKind.String: str,
    NodeKind.Boolean: lambda value: value == "true",
    NodeKind.Null: lambda value: None,
}
# `with input as ...` outside a comment (see interpreter()).
_WITH_INPUT = re.compile(r"^[^#\n]*\bwith\s+input\s+as\b", re.MULTILINE)
# One `(error ...)` of rego-cpp's error dump: file, character offset, message.
_ERROR = re.compile(r"\(error \d+:([^|\s]+)\|(\d+)\|\d+\s+\(errormsg \d+:([^\n]*?)\)\n")


class CompileError(Exception):
    """Modules or data that rego-cpp refused; the message names file, line and problem."""


def describe_error(text: str, sources: Mapping[str, str]) -> str:
    """rego-cpp's error dump as `file:line: message; ...` (the dump itself when it is not one)."""
    found = []
    for name, offset, message in _ERROR.findall(text):
        line = sources[name].count("\n", 0, int(offset)) + 1 if name in sources else "?"
        found.append(f"{name}:{line}: {message}")
    return "; ".join(dict.fromkeys(found)) or text.strip()


def interpreter(modules: Mapping[str, str], data_documents: Iterable[str] = ()) -> Interpreter:
    """An interpreter holding `modules` (name -> source) and data (JSON objects merged at the root)."""
    for name, source in modules.items():
        if _WITH_INPUT.search(source):
            # rego-cpp 1.5 aborts the whole process (C++ terminate) building such a module.
            raise CompileError(
                f"{name}: `with input as ...` is not supported by rego-cpp 1.5; "
                "override input fields instead (`with input.action as ...`)"
            )
    rego = Interpreter()
    rego.log_level = LogLevel.NONE  # otherwise rego-cpp prints parse errors to stdout; we raise them
    try:
        for name, source in modules.items():
            rego.add_module(name, source)
        for document in data_documents:
            rego.add_data_json(document)
    except RegoError as exc:
        raise CompileError(describe_error(str(exc), modules)) from exc
    return rego


class CompiledQueries:
    """Rules of an interpreter's modules (`package/rule` entrypoints) compiled once, evaluated often.

    rego-cpp keeps the input inside the interpreter, so evaluations are serialised by a lock.
    """

    def __init__(self, rego: Interpreter, entrypoints: Sequence[str]) -> None:
        self._rego = rego
        self._lock = threading.Lock()
        try:
            self._bundle = rego.build(None, list(entrypoints))
        except RegoError as exc:
            raise CompileError(str(exc)) from exc
        if not self._bundle.ok():
            raise CompileError(f"rego-cpp could not compile {', '.join(entrypoints)}")

    def evaluate(self, entrypoint: str, input_document: Mapping[str, Any]) -> Any:
        """The rule's value for this input; UNDEFINED when it has none; RegoError on failure."""
        with self._lock:
            self._rego.set_input(Input(input_document))
            output = _c.rego_bundle_query_entrypoint(self._rego._impl, self._bundle._impl, entrypoint)
            return _read(self._rego, output)


def _read(rego: Interpreter, output: int) -> Any:
    try:
        if not _c.rego_output_ok(output):
            # rego-cpp reports some failures (e.g. conflicting values of a complete rule) with no text.
            raise RegoError(_c.rego_get_error(rego._impl) or "evaluation failed and rego-cpp gave no detail")
        results = _c.rego_output_node(output)  # Results -> Result -> (Terms, Bindings)
        if not results or _c.rego_node_size(results) == 0:
            return UNDEFINED
        terms = _c.rego_node_get(_c.rego_node_get(results, 0), 0)
        if _c.rego_node_size(terms) == 0:
            return UNDEFINED
        return _value(_c.rego_node_get(terms, 0))
    finally:
        _c.rego_free_output(output)


def _value(node: int) -> Any:
    kind = _c.rego_node_type(node)
    if kind in _SCALARS:
        return _SCALARS[kind](_c.rego_node_value(node))
    children = [_c.rego_node_get(node, i) for i in range(_c.rego_node_size(node))]
    if kind in (NodeKind.Term, NodeKind.Scalar):
        return _value(children[0])
    if kind in (NodeKind.Array, NodeKind.Set):  # a set comes back as a list, in rego-cpp's sorted order
        return [_value(child) for child in children]
    if kind == NodeKind.Object:
        return {_value(_c.rego_node_get(item, 0)): _value(_c.rego_node_get(item, 1)) for item in children}
    raise RegoError(f"unexpected rego-cpp result node {kind!r}")

"""What the compiler passes around: a scope (the workflow or one branch) and a compiled piece."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aob.asl import GovernanceArns, governed_call
from aob.asl._governed import State
from aob.workflows import _states as asl


@dataclass(frozen=True)
class Scope:
    """The workflow (key "") or a branch / map iteration: its own failure states and `end` transition."""

    key: str
    step_scope: str  # an expression unique to this scope's run or item: part of every step id
    end: dict[str, Any]  # the transition of `end: true`
    where: str = ""  # the spec path of its nodes, for problems: "" or "nodes.fan.branches.0."

    @property
    def failure(self) -> str:
        return f"{self.key}Failed" if self.key else "RecordFailure"

    @property
    def denial(self) -> str:
        return f"{self.key}RecordDenial"

    def nested(self, name: str, field: str) -> str:
        return f"{self.where}nodes.{name}.{field}."


@dataclass
class Piece:
    """A node's states and the ones a successful pass enters, in order."""

    states: dict[str, State]
    path: list[str]


def governed(
    explicit: bool,
    arns: GovernanceArns,
    step: str,
    kind: str,
    call: State,
    action: dict[str, Any],
    estimate_tokens: int,
    exit: dict[str, Any],
    scope: Scope,
) -> Piece:
    """A gateway call: alone (fused), or as the explicit governed step around it (policy, reserve, settle)."""
    if not explicit:
        return Piece({step: {**call, **exit}}, [step])
    states = governed_call(
        step,
        call,
        arns,
        capability=asl.CAPABILITY[kind],
        action_path="$.action",  # replaced below by the action itself, built from the state
        estimate_path="$.estimate_tokens",  # replaced below by the node's estimate
        usage_path=f"{call['ResultPath']}.usage",
        next_state=scope.failure,  # replaced below by the node's exit
        on_denied=scope.denial,
        on_quota_exceeded=scope.failure,
    )
    _inline(states[f"{step}CheckPolicy"], "action", action)
    _inline(states[f"{step}ReserveTokens"], "estimate_tokens", estimate_tokens)
    settle = states[f"{step}SettleTokens"]
    del settle["Next"]
    settle.update(exit)
    path = [f"{step}CheckPolicy", f"{step}IsAllowed", f"{step}ReserveTokens", step, f"{step}SettleTokens"]
    return Piece(states, path)


def _inline(state: State, key: str, value: Any) -> None:
    payload = state["Parameters"]["Payload"]
    del payload[f"{key}.$"]
    payload[key] = value


def _targets(state: State) -> list[str]:
    found = [state.get("Next"), state.get("Default")]
    found += [rule["Next"] for rule in state.get("Choices", [])]
    found += [catch["Next"] for catch in state.get("Catch", [])]
    return [target for target in found if target]


def prune(start: str, states: dict[str, State]) -> dict[str, State]:
    """The states reachable from start (Step Functions refuses unreachable ones), in their order."""
    reached, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in reached and name in states:
            reached.add(name)
            todo.extend(_targets(states[name]))
    return {name: state for name, state in states.items() if name in reached}

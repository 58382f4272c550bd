"""What the compiler passes around: a scope (the workflow or one branch) and a compiled piece."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aob.asl import GovernanceArns, StepRecord, governed_call, step_governance
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


# The payload entries of a gateway call that say what it was asked: recorded as the step's `call`.
CALL_FIELDS = ("tool", "args", "messages", "tools")
LEASE = {"session_id.$": "$.session_id", "fencing_token.$": "$.governance.lease.value.fencing_token"}
# What a map iteration needs to record its steps: the session and the run's lease.
ITEM_LEASE = {"session_id.$": "$.session_id", "governance": {"lease.$": "$.governance.lease"}}


@dataclass
class Piece:
    """A node's states and the ones a successful pass enters, in order."""

    states: dict[str, State]
    path: list[str]


def governed(
    explicit: bool,
    arns: GovernanceArns,
    step: str,
    node: str,
    kind: str,
    call: State,
    action: dict[str, Any],
    estimate_tokens: int,
    exit: dict[str, Any],
    scope: Scope,
) -> Piece:
    """A gateway call of spec node `node`, recording its step: alone (fused: the gateway records,
    told where by the payload's `record`), or as the explicit governed step around it (policy,
    reserve, call, settle, Record)."""
    payload = call["Parameters"]["Payload"]
    if not explicit:
        payload["record"] = {"node": node, **LEASE}
        return Piece({step: {**call, **exit}}, [step])
    asked = {key: value for key, value in payload.items() if key.removesuffix(".$") in CALL_FIELDS}
    payload["governance"] = step_governance(step)  # the gateway verifies and uses them, not its own
    record = StepRecord(
        {"step_id.$": payload["step_id.$"], "node": {"name": node, "kind": kind}, "call": asked},
        scope.failure,
    )
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
        record=record,
    )
    _inline(states[f"{step}CheckPolicy"], "action", action)
    _inline(states[f"{step}ReserveTokens"], "estimate_tokens", estimate_tokens)
    # The decision and the ledger row name the run and step, as the gateway's own would.
    ids = {"run_id.$": "$.run_id", "step_id.$": payload["step_id.$"]}
    states[f"{step}CheckPolicy"]["Parameters"]["Payload"].update(ids)
    model = {"model.$": f"{call['ResultPath']}.value.model"} if kind == "model" else {}
    states[f"{step}SettleTokens"]["Parameters"]["Payload"].update(ids | model)
    recorded = states[f"{step}Record"]
    del recorded["Next"]
    recorded.update(exit)
    path = [
        f"{step}CheckPolicy",
        f"{step}IsAllowed",
        f"{step}ReserveTokens",
        step,
        f"{step}SettleTokens",
        f"{step}Record",
    ]
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

"""An agent node as states: the model proposes tool calls, they run, their results go back to it.

    <A>Start -> <A>CallModel -> <A>WantsTools? -no-> <A>Answer -> next
                     ^              -yes-> <A>CallTools (Map: one governed tool call per proposal)
                     |                     -> <A>RecordStep -> <A>JoinMessages -> <A>AppendMessages
                     |                        (transcript += reply + tool messages; steps + 1)
                     +---- steps < max_steps <- <A>UnderLimit? -no-> <A>Answer

The transcript lives at `$.<agent>.messages`. No intrinsic appends a list to a list, and the
JSONata that could is not run by LocalStack (it needs a Java runtime it downloads), so three
JSONPath Pass states do it: keep the reply's role, content and tool_calls (the provider adds
fields a request may not carry) and count the step; States.Array the transcript, [reply] and
the tool messages; flatten that with the path `[*][*]`.

A call the model got wrong (bad arguments, unknown tool, a failing tool, a policy denial) does not
end the run: its tool message is `{"error": <type>, "message": <text>}`, for the next round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aob.asl import lambda_task
from aob.asl._governed import State
from aob.workflows import _states as asl
from aob.workflows._nodes import ITEM_LEASE, Piece, Scope, governed, prune
from aob.workflows.spec import AgentNode

if TYPE_CHECKING:
    from aob.workflows.compiler import _Compiler

# Errors of a tool call the model got wrong: it reads them as the call's tool message and may try
# again. Any other error (quota, approval, an outage past its retries) still fails the run.
MODEL_CAN_FIX = ["InvalidToolArguments", "UnknownTool", "ToolFailed", "ToolResponseTooLarge", "PolicyDenied"]


def _record_step(name: str) -> dict[str, State]:
    """RecordStep, JoinMessages, AppendMessages: the round's reply and tool messages join the transcript."""
    prefix, at = asl.pascal(name), f"$.{name}"
    kept = {"steps.$": f"{at}.steps", "reply.$": f"{at}.reply", "tool_messages.$": f"{at}.tool_messages"}

    def rebuild(fields: dict[str, Any], next_state: str) -> State:
        return {"Type": "Pass", "Parameters": {**kept, **fields}, "ResultPath": at, "Next": next_state}

    reply = {
        "role": "assistant",
        "content.$": f"{at}.reply.message.content",
        "tool_calls.$": f"{at}.reply.message.tool_calls",
    }
    parts = f"States.Array({at}.messages, States.Array({at}.said), {at}.tool_messages)"
    return {
        f"{prefix}RecordStep": rebuild(
            {"steps.$": f"States.MathAdd({at}.steps, 1)", "messages.$": f"{at}.messages", "said": reply},
            f"{prefix}JoinMessages",
        ),
        f"{prefix}JoinMessages": rebuild({"parts.$": parts}, f"{prefix}AppendMessages"),
        f"{prefix}AppendMessages": rebuild({"messages.$": f"{at}.parts[*][*]"}, f"{prefix}UnderLimit"),
    }


def _tool_error(prefix: str) -> dict[str, State]:
    """A caught tool error (`$.error`: Error, and Cause, the function's error as JSON) as the tool message
    `{"error": <type>, "message": <text>}`, so the model can fix its call in the next round. (No
    States.Format with braces: LocalStack's interpreter does not take escaped ones.)"""
    return {
        f"{prefix}ToolFailed": {
            "Type": "Pass",
            "Parameters": {"error.$": "$.error.Error", "cause.$": "States.StringToJson($.error.Cause)"},
            "ResultPath": "$.failed",
            "Next": f"{prefix}ToolError",
        },
        f"{prefix}ToolError": {
            "Type": "Pass",
            "Parameters": {"error.$": "$.failed.error", "message.$": "$.failed.cause.errorMessage"},
            "ResultPath": "$.failed",
            "Next": f"{prefix}ToolErrorMessage",
        },
        f"{prefix}ToolErrorMessage": {
            "Type": "Pass",
            "Parameters": {
                "role": "tool",
                "tool_call_id.$": "$.call.id",
                "content.$": "States.JsonToString($.failed)",
            },
            "End": True,
        },
    }


def _denied(prefix: str) -> State:
    """Explicit mode's denial (reasons at `$.denied`, already recorded) as _tool_error's tool message."""
    text = asl.format_call(
        "policy denied tool {}: {}", ["$.call.function.name", "States.JsonToString($.denied.reasons)"]
    )
    return {
        "Type": "Pass",
        "Parameters": {"error": "PolicyDenied", "message.$": text},
        "ResultPath": "$.failed",
        "Next": f"{prefix}ToolErrorMessage",
    }


def _tool_iterator(compiler: _Compiler, name: str, prefix: str, scope: Scope) -> dict[str, Any]:
    """One proposed tool call (at `$.call`) through the tool gateway, answered as a tool message."""
    inner = Scope(f"{prefix}CallTools", "$.step_scope", {"Next": f"{prefix}ToolMessage"}, scope.where)
    args = {"args.$": "States.StringToJson($.call.function.arguments)"}
    tool = {"tool.$": "$.call.function.name"}
    call = lambda_task(
        asl.GATEWAY_ARN["tool"],
        asl.tool_payload(asl.step_id("$.step_scope", name, "$.call.id"), tool, args),
        "$.result",
        ResultSelector={"value.$": "$.Payload", "result.$": "$.Payload.result", "usage": asl.NO_USAGE},
        Retry=asl.retry("tool"),
        Catch=[
            {"ErrorEquals": MODEL_CAN_FIX, "ResultPath": "$.error", "Next": f"{prefix}ToolFailed"},
            *asl.catch_all(inner.failure),
        ],
    )
    piece = governed(
        compiler.explicit,
        compiler.arns,
        f"{prefix}CallTool",
        name,
        "tool",
        call,
        {"kind": "tool", **tool, **args},
        0,
        inner.end,
        inner,
    )
    message = {
        "Type": "Pass",
        "Parameters": {
            "role": "tool",
            "tool_call_id.$": "$.call.id",
            "content.$": "States.JsonToString($.result.result)",
        },
        "End": True,
    }
    start = piece.path[0]
    terminals = compiler.terminals(inner)
    if inner.denial in terminals:  # explicit mode: the denial is the model's to read, not the run's end
        terminals[inner.denial] = _denied(prefix)
    states = {**piece.states, f"{prefix}ToolMessage": message, **_tool_error(prefix), **terminals}
    return {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": start, "States": prune(start, states)}


def agent_states(
    compiler: _Compiler, name: str, node: AgentNode, scope: Scope, exit: dict[str, Any]
) -> Piece:
    prefix, at = asl.pascal(name), f"$.{name}"
    call = lambda_task(
        asl.GATEWAY_ARN["model"],
        asl.model_payload(
            node, compiler.step_id(scope, name, f"{at}.steps"), {"messages.$": f"{at}.messages"}
        ),
        f"{at}.reply",
        ResultSelector={
            "value.$": "$.Payload",
            "message.$": "$.Payload.choices[0].message",
            "usage": asl.MODEL_USAGE,
        },
        Retry=asl.retry("model"),
        Catch=asl.catch_all(scope.failure),
    )
    model = governed(
        compiler.explicit,
        compiler.arns,
        f"{prefix}CallModel",
        name,
        "model",
        call,
        {"kind": "model", "tier": node.tier},
        node.max_tokens,
        {"Next": f"{prefix}WantsTools"},
        scope,
    )
    call_model = model.path[0]
    selector = {
        **asl.CONTEXT,
        **ITEM_LEASE,
        "call.$": "$$.Map.Item.Value",
        "step_scope.$": asl.format_call("{}/{}/{}", [scope.step_scope, f"'{name}'", f"{at}.steps"]),
    }
    states: dict[str, State] = {
        f"{prefix}Start": {
            "Type": "Pass",
            "Parameters": {"steps": 0, "messages": asl.messages(node)},
            "ResultPath": at,
            "Next": call_model,
        },
        **model.states,
        f"{prefix}WantsTools": {
            "Type": "Choice",
            "Choices": [
                {
                    "Variable": f"{at}.reply.message.tool_calls[0]",
                    "IsPresent": True,
                    "Next": f"{prefix}CallTools",
                }
            ],
            "Default": f"{prefix}Answer",
        },
        f"{prefix}CallTools": {
            "Type": "Map",
            "ItemsPath": f"{at}.reply.message.tool_calls",
            "ItemSelector": selector,
            "ItemProcessor": _tool_iterator(compiler, name, prefix, scope),
            "ResultPath": f"{at}.tool_messages",
            "Catch": asl.catch_all(scope.failure),
            "Next": f"{prefix}RecordStep",
        },
        **_record_step(name),
        f"{prefix}UnderLimit": {
            "Type": "Choice",
            "Choices": [{"Variable": f"{at}.steps", "NumericLessThan": node.max_steps, "Next": call_model}],
            "Default": f"{prefix}Answer",
        },
        f"{prefix}Answer": {
            "Type": "Pass",
            "Parameters": {"text.$": f"{at}.reply.message.content", "steps.$": f"{at}.steps"},
            "ResultPath": f"{at}.answer",
            **exit,
        },
    }
    return Piece(states, [f"{prefix}Start", *model.path, f"{prefix}WantsTools", f"{prefix}Answer"])

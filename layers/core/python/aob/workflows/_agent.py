"""An agent node as states: the model proposes tool calls, they run, their results go back to it.

    <A>Start -> <A>CallModel -> <A>WantsTools? -no-> <A>Answer -> next
                     ^              -yes-> <A>CallTools (Map: one governed tool call per proposal)
                     |                     -> <A>RecordStep (transcript += reply + tool messages; steps + 1)
                     +---- steps < max_steps <- <A>UnderLimit? -no-> <A>Answer

The transcript lives at `$.<agent>.messages`. Appending a list to a list has no JSONPath
intrinsic, so RecordStep is the one JSONata state (it also counts the step, saving a transition).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aob.asl import lambda_task
from aob.asl._governed import State
from aob.workflows import _states as asl
from aob.workflows._nodes import Piece, Scope, governed, prune
from aob.workflows.spec import AgentNode

if TYPE_CHECKING:
    from aob.workflows.compiler import _Compiler


def _record_step(name: str) -> State:
    agent = f"$states.input.{name}"
    reply = {"role": "'assistant'", "content": f"{agent}.reply.message.content"}
    reply_json = ", ".join(f"'{key}': {value}" for key, value in reply.items())
    reply_json += f", 'tool_calls': {agent}.reply.message.tool_calls"
    messages = f"$append($append({agent}.messages, [{{{reply_json}}}]), {agent}.tool_messages)"
    update = f"{{'steps': {agent}.steps + 1, 'messages': {messages}}}"
    return {
        "Type": "Pass",
        "QueryLanguage": "JSONata",
        "Output": f"{{% $merge([$states.input, {{'{name}': $merge([{agent}, {update}])}}]) %}}",
        "Next": f"{asl.pascal(name)}UnderLimit",
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
        Catch=asl.catch_all(inner.failure),
    )
    piece = governed(
        compiler.explicit,
        compiler.arns,
        f"{prefix}CallTool",
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
    states = {**piece.states, f"{prefix}ToolMessage": message, **compiler.terminals(inner)}
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
        f"{prefix}RecordStep": _record_step(name),
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

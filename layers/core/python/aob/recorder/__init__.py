"""The Recorder: one hash-chained DecisionRecord per step, written with its event and outbox row.

`Recorder().record(DecisionRecord, tenant_id=..., session_id=..., fencing_token=...)` appends a
step to its run's chain in one transaction guarded by the session lease's fencing token;
`verify_chain` recomputes the chain and names the first record that breaks it. `record_step`
records one governed step from what its gateway was asked and answered (RecordStepRequest):
explicit mode's Record states (functions/step_recorder) and the fused gateways call it.
"""

from __future__ import annotations

from aob.db.events import stream_id
from aob.recorder._hash import canonical_json, record_hash
from aob.recorder._models import (
    ChainReport,
    DecisionRecord,
    ModelRef,
    Node,
    PolicyRef,
    StoredRecord,
    Timings,
    ToolCall,
    Usage,
)
from aob.recorder._steps import RecordStepRequest, RecordTarget, SessionId, StepPolicy, StepRecorder
from aob.recorder._store import EVENT_TYPE, Recorder, get_recorder

__all__ = [
    "EVENT_TYPE",
    "ChainReport",
    "DecisionRecord",
    "ModelRef",
    "Node",
    "PolicyRef",
    "RecordStepRequest",
    "RecordTarget",
    "Recorder",
    "SessionId",
    "StepPolicy",
    "StepRecorder",
    "StoredRecord",
    "Timings",
    "ToolCall",
    "Usage",
    "canonical_json",
    "get_recorder",
    "record_hash",
    "stream_id",
]

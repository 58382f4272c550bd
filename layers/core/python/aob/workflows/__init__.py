"""The builder: workflow specs (YAML/JSON, JSON Schema) and their checks; the compiler makes ASL."""

from aob.workflows.spec import (
    SCHEMA_PATH,
    WorkflowSpec,
    json_schema,
    load_spec,
    parse_spec,
    write_json_schema,
)

__all__ = ["SCHEMA_PATH", "WorkflowSpec", "json_schema", "load_spec", "parse_spec", "write_json_schema"]

"""Read template.yaml (with CloudFormation short tags) and point its local paths at S3."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from aob.deploy._artifacts import Artifact

# Properties that name a local path and the shape CloudFormation wants once uploaded.
_LOCAL_URIS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Ref x` / `!GetAtt a.b` / `!Sub ...` into their long forms."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


def local_artifacts(template: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Logical id -> (resource, local path) for every resource built from a local path."""
    found = {}
    for logical_id, resource in template.get("Resources", {}).items():
        prop = _LOCAL_URIS.get(resource.get("Type", ""))
        value = resource.get("Properties", {}).get(prop) if prop else None
        if isinstance(value, str) and not value.startswith("s3://"):
            found[logical_id] = (resource, value)
    return found


def package_template(template: dict[str, Any], uploaded: dict[str, Artifact], bucket: str) -> dict[str, Any]:
    """A copy of the template whose local paths are replaced by the uploaded S3 objects."""
    packaged = copy.deepcopy(template)
    for logical_id, artifact in uploaded.items():
        resource = packaged["Resources"][logical_id]
        prop = _LOCAL_URIS[resource["Type"]]
        resource["Properties"][prop] = {"Bucket": bucket, "Key": artifact.key}
    return packaged

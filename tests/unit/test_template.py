"""template.yaml: valid for CloudFormation, wired to every function and flow, least privilege."""

from __future__ import annotations

import json
from pathlib import Path

from aob.deploy import load_template
from cfnlint.api import ManualArgs, lint_file

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES = TEMPLATE["Resources"]


def _of_type(kind: str) -> dict[str, dict]:
    return {name: r["Properties"] for name, r in RESOURCES.items() if r["Type"] == kind}


def test_template_passes_cfn_lint() -> None:
    matches = lint_file(ROOT / "template.yaml", config=ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


def test_every_function_folder_is_deployed() -> None:
    deployed = {props["CodeUri"] for props in _of_type("AWS::Serverless::Function").values()}
    folders = {f"functions/{p.parent.name}" for p in ROOT.glob("functions/*/app.py")}
    assert folders == deployed


def test_every_state_machine_definition_is_deployed_and_substituted() -> None:
    machines = _of_type("AWS::Serverless::StateMachine")
    assert {props["DefinitionUri"] for props in machines.values()} == {
        p.relative_to(ROOT).as_posix() for p in ROOT.glob("statemachines/*.asl.json")
    }
    for props in machines.values():
        definition = (ROOT / props["DefinitionUri"]).read_text()
        json.loads(definition)
        for key in props.get("DefinitionSubstitutions", {}):
            assert "${" + key + "}" in definition, f"{key} is never used in {props['DefinitionUri']}"


def test_no_policy_grants_every_action() -> None:
    text = json.dumps(RESOURCES)
    assert '"Action": "*"' not in text and '"Action": ["*"]' not in text
    for props in _of_type("AWS::Serverless::StateMachine").values():
        assert props["Policies"], "state machines list the functions they may invoke"

"""`aob compile`: a spec file in, its ASL out; a malformed spec is refused naming node and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aob.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support_triage" / "workflow.yaml"


@pytest.mark.parametrize("mode", ["explicit", "fused"])
def test_compile_prints_the_committed_asl(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(EXAMPLE), "--mode", mode]) == 0

    out, err = capsys.readouterr()
    committed = json.loads((EXAMPLE.parent / f"compiled.{mode}.asl.json").read_text())
    assert json.loads(out) == committed
    assert "state transitions" in err


def test_fused_needs_fewer_transitions_than_explicit(capsys: pytest.CaptureFixture[str]) -> None:
    counts = {}
    for mode in ("explicit", "fused"):
        main(["compile", str(EXAMPLE), "--mode", mode])
        err = capsys.readouterr().err
        counts[mode] = int(err.split(" state transitions")[0].rsplit(" ", 1)[1])
    assert counts["fused"] < counts["explicit"]


def test_a_dangling_edge_is_refused_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "broken.json"
    spec.write_text(
        json.dumps(
            {
                "name": "broken",
                "version": "1",
                "start": "lookup",
                "nodes": {"lookup": {"type": "tool", "tool": "lookup_order", "next": "nowhere"}},
            }
        )
    )
    out_file = tmp_path / "out.asl.json"

    assert main(["compile", str(spec), "--out", str(out_file)]) == 1

    err = capsys.readouterr().err
    assert "nodes.lookup.next" in err
    assert not out_file.exists()


def test_schema_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", "--schema"]) == 0
    assert "nodes" in json.loads(capsys.readouterr().out)["properties"]

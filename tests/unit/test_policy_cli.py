"""`aob policy keygen | sign | verify | test`, driven as the `aob` command drives them."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path

import pytest
from aob.errors import AobError
from aob.policy import load_public_key
from aob.policy.cli import register

ROOT = Path(__file__).resolve().parents[2]


def aob(*argv: str) -> int:
    """Parse and run like `aob.cli.main`, but let AobError through for the test to inspect."""
    parser = argparse.ArgumentParser(prog="aob")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["policy", *argv])
    return int(args.func(args))


def test_keygen_sign_verify_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, bundle = tmp_path / "keys", tmp_path / "out" / "bundle.tar.gz"

    assert aob("keygen", "--out-dir", str(keys), "--key-id", "dev-1") == 0
    printed = capsys.readouterr().out
    trusted = json.loads(printed.split("AOB_POLICY_TRUSTED_KEYS='")[1].split("'")[0])
    assert stat.S_IMODE((keys / "dev-1.pem").stat().st_mode) == 0o600
    assert load_public_key(trusted["dev-1"])  # the env value is a usable key

    assert (
        aob(
            "sign",
            str(ROOT / "policies"),
            "--key",
            str(keys / "dev-1.pem"),
            "--key-id",
            "dev-1",
            "--out",
            str(bundle),
        )
        == 0
    )
    assert aob("verify", str(bundle), "--public-key", f"dev-1={keys / 'dev-1.pub.pem'}") == 0
    assert "signed with key dev-1" in capsys.readouterr().out


def test_verify_refuses_a_bundle_signed_under_another_key_id(tmp_path: Path) -> None:
    aob("keygen", "--out-dir", str(tmp_path), "--key-id", "a")
    aob("keygen", "--out-dir", str(tmp_path), "--key-id", "b")
    bundle = tmp_path / "bundle.tar.gz"
    aob(
        "sign",
        str(ROOT / "policies"),
        "--key",
        str(tmp_path / "a.pem"),
        "--key-id",
        "a",
        "--out",
        str(bundle),
    )

    with pytest.raises(AobError, match="key id 'a', which is not trusted"):
        aob("verify", str(bundle), "--public-key", f"b={tmp_path / 'b.pub.pem'}")
    with pytest.raises(AobError, match="signature does not verify"):
        aob("verify", str(bundle), "--public-key", f"a={tmp_path / 'b.pub.pem'}")


def test_keygen_never_overwrites_a_private_key(tmp_path: Path) -> None:
    aob("keygen", "--out-dir", str(tmp_path), "--key-id", "dev")
    with pytest.raises(AobError, match="exists"):
        aob("keygen", "--out-dir", str(tmp_path), "--key-id", "dev")


def test_default_key_id_comes_from_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    aob("keygen", "--out-dir", str(tmp_path))

    [private] = [path for path in tmp_path.glob("*.pem") if not path.name.endswith(".pub.pem")]
    assert private.stem.startswith("key-")
    assert f"key id:      {private.stem}" in capsys.readouterr().out


def test_policy_test_reports_like_opa(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert aob("test", str(ROOT / "policies")) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS: ")

    (tmp_path / "p_test.rego").write_text("package p_test\n\ntest_ok if { true }\n\ntest_bad if { false }\n")
    assert aob("test", "-v", str(tmp_path)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("data.p_test.test_ok: PASS (")
    assert lines[1].startswith("data.p_test.test_bad: FAIL (") and lines[1].endswith("): undefined")
    assert lines[-2:] == ["PASS: 1/2", "FAIL: 1/2"]

"""Signed policy bundles: what verifies, and every way a bundle is refused."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from aob.errors import BundleRejected, ConfigurationError
from aob.policy import load_public_key, policy_files, read_bundle, sign_bundle, trusted_keys
from aob.policy._bundle import canonical_json
from aob.policy._keys import public_key_b64, public_key_pem
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

POLICIES = Path(__file__).resolve().parents[2] / "policies"
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
TRUSTED = {"dev": KEY.public_key()}
FILES = {"a.rego": b"package a\nx := 1\n", "data.json": b'{"a": {"y": 2}}'}


def tar_gz(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return gzip.compress(raw.getvalue())


def signed(manifest: dict, files: dict[str, bytes] = FILES, key: Ed25519PrivateKey = KEY) -> bytes:
    """A bundle with this manifest, signed correctly: only the manifest's content is at fault."""
    canonical = canonical_json(manifest)
    return tar_gz({"manifest.json": canonical, "signature": base64.b64encode(key.sign(canonical)), **files})


def manifest(**changes: object) -> dict:
    """The manifest sign_bundle writes for FILES, with changes (None drops a field)."""
    base = {
        "format": "aob-policy-bundle/1",
        "key_id": "dev",
        "files": {name: hashlib.sha256(body).hexdigest() for name, body in FILES.items()},
    }
    return {k: v for k, v in (base | changes).items() if v is not None}


def unpack(bundle: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        return {info.name: tar.extractfile(info).read() for info in tar}  # type: ignore[union-attr]


def test_signed_bundle_verifies_with_its_digest_key_and_files() -> None:
    bundle = read_bundle(sign_bundle(FILES, KEY, "dev"), TRUSTED)

    assert bundle.key_id == "dev"
    assert bundle.digest == "sha256:" + hashlib.sha256(canonical_json(manifest())).hexdigest()
    assert dict(bundle.files) == FILES
    assert bundle.modules == {"a.rego": "package a\nx := 1\n"}
    assert bundle.data_documents == ['{"a": {"y": 2}}']


def test_signing_is_reproducible_and_the_digest_follows_the_content() -> None:
    assert sign_bundle(FILES, KEY, "dev") == sign_bundle(FILES, KEY, "dev")
    changed = read_bundle(sign_bundle({**FILES, "a.rego": b"package a\nx := 2\n"}, KEY, "dev"), TRUSTED)
    assert changed.digest != read_bundle(sign_bundle(FILES, KEY, "dev"), TRUSTED).digest


def test_the_shipped_policies_bundle_without_their_tests() -> None:
    files = policy_files(POLICIES)

    assert "data.json" in files and "decision.rego" in files
    assert not [name for name in files if name.endswith("_test.rego")]


def test_a_directory_without_policies_cannot_be_bundled(tmp_path: Path) -> None:
    (tmp_path / "only_test.rego").write_text("package t\ntest_x := true\n")
    with pytest.raises(ConfigurationError, match="no .rego policy files"):
        policy_files(tmp_path)


@pytest.mark.parametrize("key_id", [None, "", 7], ids=["absent", "empty", "not-a-string"])
def test_a_manifest_without_a_key_id_is_refused(key_id: object) -> None:
    # A correctly signed bundle whose manifest names no key: OPA once accepted these.
    with pytest.raises(BundleRejected, match="names no key id"):
        read_bundle(signed(manifest(key_id=key_id)), TRUSTED)


def test_an_unknown_key_id_is_refused_even_when_the_signature_is_good() -> None:
    with pytest.raises(BundleRejected, match="key id 'intruder', which is not trusted"):
        read_bundle(signed(manifest(key_id="intruder")), TRUSTED)
    with pytest.raises(BundleRejected, match="none: set AOB_POLICY_TRUSTED_KEYS"):
        read_bundle(sign_bundle(FILES, KEY, "dev"), {})


def test_a_bundle_signed_by_another_key_under_a_trusted_id_is_refused() -> None:
    with pytest.raises(BundleRejected, match="signature does not verify with key 'dev'"):
        read_bundle(sign_bundle(FILES, OTHER_KEY, "dev"), TRUSTED)


def test_an_edited_manifest_breaks_the_signature() -> None:
    members = unpack(sign_bundle(FILES, KEY, "dev"))
    edited = json.loads(members["manifest.json"])
    edited["files"]["a.rego"] = hashlib.sha256(b"package a\nx := 666\n").hexdigest()
    members |= {"manifest.json": json.dumps(edited).encode(), "a.rego": b"package a\nx := 666\n"}

    with pytest.raises(BundleRejected, match="signature does not verify"):
        read_bundle(tar_gz(members), TRUSTED)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"a.rego": b"package a\nx := 666\n"}, "a.rego does not match its sha256"),
        ({"extra.rego": b"package extra\n"}, r"not listed \['extra.rego'\]"),
        ({"signature": b"not base64!"}, "signature does not verify"),
    ],
    ids=["altered-file", "extra-file", "garbled-signature"],
)
def test_tampered_members_are_refused(change: dict[str, bytes], message: str) -> None:
    members = unpack(sign_bundle(FILES, KEY, "dev")) | change
    with pytest.raises(BundleRejected, match=message):
        read_bundle(tar_gz(members), TRUSTED)


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("data.json", r"missing \['data.json'\]"),
        ("signature", "no signature"),
        ("manifest.json", "no manifest"),
    ],
)
def test_missing_members_are_refused(drop: str, message: str) -> None:
    members = unpack(sign_bundle(FILES, KEY, "dev"))
    del members[drop]
    with pytest.raises(BundleRejected, match=message):
        read_bundle(tar_gz(members), TRUSTED)


def test_unsafe_or_odd_archives_are_refused() -> None:
    with pytest.raises(BundleRejected, match="not a policy bundle"):
        read_bundle(b"PK\x03\x04 a zip, not a tar.gz", TRUSTED)
    with pytest.raises(BundleRejected, match="not allowed"):
        read_bundle(tar_gz({"../escape.rego": b"package x\n"}), TRUSTED)

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        link = tarfile.TarInfo("data.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(BundleRejected, match="not a regular file"):
        read_bundle(gzip.compress(raw.getvalue()), TRUSTED)


def test_a_foreign_manifest_format_is_refused() -> None:
    with pytest.raises(BundleRejected, match="not an aob-policy-bundle/1 manifest"):
        read_bundle(signed(manifest(format="opa")), TRUSTED)


def test_trusted_keys_read_base64_and_pem_and_name_a_bad_entry() -> None:
    public = KEY.public_key()
    keys = trusted_keys({"b64": public_key_b64(public), "pem": public_key_pem(public).decode()})

    assert {key_id: public_key_b64(key) for key_id, key in keys.items()} == dict.fromkeys(
        ["b64", "pem"], public_key_b64(public)
    )
    assert public_key_b64(load_public_key(public_key_pem(public))) == public_key_b64(public)
    with pytest.raises(ConfigurationError, match="trusted key 'broken'"):
        trusted_keys({"broken": "c2hvcnQ="})
    with pytest.raises(ConfigurationError, match="key id 'has space' is not valid"):
        trusted_keys({"has space": public_key_b64(public)})


@pytest.mark.parametrize("name", ["manifest.json", "signature", "../up.rego", "/abs.rego", "a//b.rego"])
def test_files_that_would_clash_or_escape_are_not_signed(name: str) -> None:
    with pytest.raises(ConfigurationError, match="cannot bundle a file named"):
        sign_bundle({**FILES, name: b"package x\n"}, KEY, "dev")

"""Signed policy bundles: one .tar.gz holding the policy files, `manifest.json` and `signature`.

The manifest lists every file with its sha256 and names the signing key (`key_id`); `signature`
is the base64 Ed25519 signature of the canonical manifest (sorted keys, no spaces, ASCII), and the
bundle's digest is `sha256:` + the sha256 of that canonical manifest. A bundle is accepted only
when its key id is one of the trusted keys, the signature verifies with that key, and the files
are exactly those the manifest lists, each with its hash. Nothing is trusted before that.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aob.errors import BundleRejected, ConfigurationError
from aob.policy._keys import TrustedKeys, check_key_id

FORMAT = "aob-policy-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "signature"
DATA_FILE = "data.json"
MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # uncompressed: policies are small; refuse a decompression bomb


@dataclass(frozen=True)
class PolicyBundle:
    """A bundle whose signature, key id and file hashes have all been verified."""

    digest: str
    key_id: str
    files: Mapping[str, bytes]

    @property
    def modules(self) -> dict[str, str]:
        """The Rego modules, path -> source."""
        return {path: body.decode() for path, body in self.files.items() if path.endswith(".rego")}

    @property
    def data_documents(self) -> list[str]:
        """The data files' JSON texts (each an object merged at the root of `data`)."""
        return [body.decode() for path, body in self.files.items() if posixpath.basename(path) == DATA_FILE]


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def policy_files(directory: Path) -> dict[str, bytes]:
    """What a bundle of `directory` holds: every .rego file but tests (`*_test.rego`), and data.json."""
    if not directory.is_dir():
        raise ConfigurationError(f"{directory} is not a directory of policies")
    files = {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
        and (path.name == DATA_FILE or (path.suffix == ".rego" and not path.name.endswith("_test.rego")))
    }
    if not any(name.endswith(".rego") for name in files):
        raise ConfigurationError(f"{directory} holds no .rego policy files")
    return files


def sign_bundle(files: Mapping[str, bytes], private_key: Ed25519PrivateKey, key_id: str) -> bytes:
    """A signed bundle (.tar.gz bytes) of `files`; byte-for-byte the same for the same input."""
    for name in files:
        if name in (MANIFEST, SIGNATURE) or posixpath.normpath(name) != name or name.startswith(("/", "../")):
            raise ConfigurationError(f"cannot bundle a file named {name!r}: use a plain relative path")
    manifest = {
        "format": FORMAT,
        "key_id": check_key_id(key_id),
        "files": {name: hashlib.sha256(body).hexdigest() for name, body in sorted(files.items())},
    }
    canonical = canonical_json(manifest)
    members = {
        MANIFEST: canonical,
        SIGNATURE: base64.b64encode(private_key.sign(canonical)),
        **dict(sorted(files.items())),
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)  # mtime, owner and mode left at 0: reproducible
            info.size = len(body)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(body))
    return gzip.compress(raw.getvalue(), mtime=0)


def read_bundle(data: bytes, trusted: TrustedKeys) -> PolicyBundle:
    """Verify a bundle against the trusted keys; BundleRejected says what failed."""
    members = _members(data)
    manifest_bytes = members.pop(MANIFEST, None)
    signature = members.pop(SIGNATURE, None)
    if manifest_bytes is None or signature is None:
        missing = MANIFEST if manifest_bytes is None else SIGNATURE
        raise BundleRejected(f"bundle has no {missing}: sign it with `aob policy sign`")
    manifest = _manifest(manifest_bytes)
    key_id = manifest.get("key_id")
    # Never fall back to "any trusted key" when the key id is missing: that is how OPA once let
    # unsigned-key bundles through.
    if not isinstance(key_id, str) or not key_id:
        raise BundleRejected("bundle manifest names no key id: refused (re-sign it with --key-id)")
    if key_id not in trusted:
        known = ", ".join(sorted(trusted)) or "none: set AOB_POLICY_TRUSTED_KEYS"
        raise BundleRejected(
            f"bundle is signed with key id {key_id!r}, which is not trusted (trusted: {known})"
        )
    canonical = canonical_json(manifest)
    try:
        trusted[key_id].verify(base64.b64decode(signature, validate=True), canonical)
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise BundleRejected(
            f"bundle signature does not verify with key {key_id!r}: it was altered or signed with another key"
        ) from exc
    _check_files(manifest, members)
    return PolicyBundle(
        digest=f"sha256:{hashlib.sha256(canonical).hexdigest()}", key_id=key_id, files=members
    )


def read_bundle_file(path: Path, trusted: TrustedKeys) -> PolicyBundle:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BundleRejected(f"cannot read policy bundle {path}: {exc.strerror or exc}") from exc
    return read_bundle(data, trusted)


def _members(data: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for info in tar:
                name = posixpath.normpath(info.name)
                if not info.isfile():
                    raise BundleRejected(f"bundle member {info.name!r} is not a regular file")
                if name != info.name or name.startswith(("/", "../")) or name in members:
                    raise BundleRejected(
                        f"bundle member name {info.name!r} is not allowed (unsafe or repeated)"
                    )
                total += info.size
                if total > MAX_BUNDLE_BYTES:
                    raise BundleRejected(f"bundle is larger than {MAX_BUNDLE_BYTES} bytes unpacked")
                extracted = tar.extractfile(info)
                assert extracted is not None  # a regular file always has contents
                members[name] = extracted.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleRejected(f"not a policy bundle (a .tar.gz made by `aob policy sign`): {exc}") from exc
    return members


def _manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleRejected(f"bundle {MANIFEST} is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleRejected(f"bundle {MANIFEST} is not an {FORMAT} manifest")
    if not isinstance(manifest.get("files"), dict):
        raise BundleRejected(f"bundle {MANIFEST} has no 'files' map")
    return manifest


def _check_files(manifest: Mapping[str, Any], members: Mapping[str, bytes]) -> None:
    listed: dict[str, Any] = manifest["files"]
    missing, extra = sorted(listed.keys() - members.keys()), sorted(members.keys() - listed.keys())
    if missing or extra:
        raise BundleRejected(f"bundle files differ from its manifest: missing {missing}, not listed {extra}")
    for name, body in members.items():
        if hashlib.sha256(body).hexdigest() != listed[name]:
            raise BundleRejected(f"bundle file {name} does not match its sha256 in the manifest")

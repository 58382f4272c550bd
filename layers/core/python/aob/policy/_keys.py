"""Ed25519 keys for signing policy bundles, and the trusted key set that verifies them.

Public keys travel as PEM files (the CLI) or as base64 of the 32 raw bytes (AOB_POLICY_TRUSTED_KEYS);
`load_public_key` reads both. Private keys are PKCS#8 PEM files and never leave the signer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from aob.errors import ConfigurationError

type TrustedKeys = Mapping[str, Ed25519PublicKey]

KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


def check_key_id(key_id: str) -> str:
    """`key_id` if it is a usable key id; ConfigurationError saying what one looks like otherwise."""
    if not KEY_ID.match(key_id):
        raise ConfigurationError(
            f"key id {key_id!r} is not valid: use 1-64 letters, digits, '.', '_', ':' or '-' (e.g. dev-2025)"
        )
    return key_id


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def default_key_id(key: Ed25519PublicKey) -> str:
    """A key id derived from the key itself, so two developers' dev keys never share one."""
    return f"key-{hashlib.sha256(raw_public_key(key)).hexdigest()[:12]}"


def public_key_b64(key: Ed25519PublicKey) -> str:
    """The form AOB_POLICY_TRUSTED_KEYS takes: base64 of the 32 raw bytes."""
    return base64.b64encode(raw_public_key(key)).decode()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from unencrypted PKCS#8 PEM (as `aob policy keygen` writes it)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(
            "policy bundles are signed with Ed25519 keys: make one with `aob policy keygen`"
        )
    return key


def load_public_key(text: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM or from base64 of its 32 raw bytes."""
    data = text.encode() if isinstance(text, str) else text
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data, validate=True))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ConfigurationError(f"not an Ed25519 public key (PEM, or base64 of 32 bytes): {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError("policy bundles are verified with Ed25519 public keys")
    return key


def trusted_keys(encoded: Mapping[str, str]) -> dict[str, Ed25519PublicKey]:
    """`{key_id: public key}` from `{key_id: PEM or base64}`; a bad entry names its key id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for key_id, text in encoded.items():
        try:
            keys[check_key_id(key_id)] = load_public_key(text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"trusted key {key_id!r}: {exc}") from exc
    return keys

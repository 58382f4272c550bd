"""The key that signs policy bundles at deploy time.

On AWS the release signer's key is given to `aob deploy --policy-key`; for local stacks a dev key
is created once under the ignored state folder. The private key never leaves the deploying
machine: the stack only receives the public half (PolicyTrustedKeys).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aob.policy import load_private_key, public_key_b64
from aob.policy._keys import check_key_id, default_key_id, private_key_pem


@dataclass(frozen=True)
class PolicySigner:
    """The key that signs policy bundles at deploy time; its public half becomes the trusted key."""

    private_key: Ed25519PrivateKey
    key_id: str

    def trusted_keys_json(self) -> str:
        return json.dumps({self.key_id: public_key_b64(self.private_key.public_key())})

    @classmethod
    def from_pem_file(cls, path: Path, key_id: str | None = None) -> PolicySigner:
        key = load_private_key(path.read_bytes())
        return cls(key, check_key_id(key_id) if key_id else default_key_id(key.public_key()))

    @classmethod
    def local_dev(cls, state_dir: Path) -> PolicySigner:
        """This checkout's dev signing key, created (mode 0600) on first use."""
        path = state_dir / "policy-keys" / "dev-signer.pem"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(private_key_pem(Ed25519PrivateKey.generate()))
        return cls.from_pem_file(path)

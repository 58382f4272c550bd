"""`aob policy ...`: test policies, make keys, sign and verify bundles.

Wired into the `aob` parser by `register(subparsers)`; each command returns an exit status and
raises AobError (printed by `aob`) for what the user must fix.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aob.errors import ConfigurationError
from aob.policy._bundle import policy_files, read_bundle_file, sign_bundle
from aob.policy._keys import (
    check_key_id,
    default_key_id,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_b64,
    public_key_pem,
)
from aob.policy.testing import run_policy_tests

DEFAULT_KEY_DIR = Path(".state") / "policy-keys"  # git-ignored: private keys never get committed


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `policy` and its subcommands to the `aob` command line."""
    policy = subparsers.add_parser("policy", help="test, sign and verify Rego policy bundles")
    commands = policy.add_subparsers(dest="policy_command", required=True)

    test = commands.add_parser("test", help="run the test_* rules of a policy directory, like `opa test`")
    test.add_argument("directory", nargs="?", type=Path, default=Path("policies"))
    test.add_argument("-v", "--verbose", action="store_true", help="also list passing tests")
    test.set_defaults(func=cmd_test)

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing bundles")
    keygen.add_argument("--out-dir", type=Path, default=DEFAULT_KEY_DIR)
    keygen.add_argument("--key-id", help="default: derived from the public key")
    keygen.set_defaults(func=cmd_keygen)

    sign = commands.add_parser("sign", help="sign a policy directory into a bundle file")
    sign.add_argument("directory", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="private key PEM (from `aob policy keygen`)")
    sign.add_argument("--key-id", required=True, help="the id verifiers know the public key by")
    sign.add_argument("--out", type=Path, required=True, help="bundle file to write (.tar.gz)")
    sign.set_defaults(func=cmd_sign)

    verify = commands.add_parser("verify", help="verify a bundle's signature, key id and file hashes")
    verify.add_argument("bundle", type=Path)
    verify.add_argument(
        "--public-key", action="append", required=True, metavar="ID=PEMFILE", help="a trusted key; repeatable"
    )
    verify.set_defaults(func=cmd_verify)


def cmd_test(args: argparse.Namespace) -> int:
    report = run_policy_tests(args.directory)
    for result in report.results:
        if result.outcome != "pass" or args.verbose:
            detail = f": {result.message}" if result.message else ""
            print(f"{result.rule}: {result.outcome.upper()} ({result.duration_s * 1000:.1f}ms){detail}")
    total = len(report.results)
    print("-" * 80)
    if not total:
        print(f"no test_* rules found under {args.directory}")
    for outcome in ("pass", "fail", "error"):
        if report.count(outcome):
            print(f"{outcome.upper()}: {report.count(outcome)}/{total}")
    return 0 if report.ok else 1


def cmd_keygen(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    key_id = check_key_id(args.key_id) if args.key_id else default_key_id(key.public_key())
    private_path, public_path = args.out_dir / f"{key_id}.pem", args.out_dir / f"{key_id}.pub.pem"
    if private_path.exists():
        raise ConfigurationError(f"{private_path} exists: choose another --key-id or remove it first")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as private_file:
        private_file.write(private_key_pem(key))
    public_path.write_bytes(public_key_pem(key.public_key()))
    print(f"private key: {private_path} (keep it secret; never commit it)")
    print(f"public key:  {public_path}")
    print(f"key id:      {key_id}")
    print(f"AOB_POLICY_TRUSTED_KEYS='{json.dumps({key_id: public_key_b64(key.public_key())})}'")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    key = load_private_key(_read(args.key))
    bundle = sign_bundle(policy_files(args.directory), key, args.key_id)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(bundle)
    print(f"signed {args.out} with key {args.key_id} ({len(bundle)} bytes)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    trusted = {}
    for entry in args.public_key:
        key_id, equals, path = entry.partition("=")
        if not equals or not key_id:
            raise ConfigurationError(f"--public-key {entry!r}: write it as KEY_ID=PEMFILE")
        trusted[check_key_id(key_id)] = load_public_key(_read(Path(path)))
    bundle = read_bundle_file(args.bundle, trusted)
    print(f"OK {args.bundle}: {bundle.digest}, signed with key {bundle.key_id}, {len(bundle.files)} files")
    return 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from exc

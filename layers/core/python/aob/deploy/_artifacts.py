"""Deterministic zips for functions and layers.

Every artifact is byte-identical for identical inputs (sorted entries, fixed timestamps and
modes), so its S3 key can be its content hash: an unchanged function or layer keeps its key and
CloudFormation sees no change, while any edit yields a new key and an update.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from aob.errors import ConfigurationError

_FIXED_DATE = (2020, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}
_SKIP_FILES = {".complete"}
# The Lambda python3.13 runtime (Amazon Linux 2023, glibc 2.34) on x86_64: the layer wheels target.
_LAMBDA_PLATFORM = "x86_64-manylinux_2_34"
_LAMBDA_PYTHON = "3.13"


@dataclass(frozen=True)
class Artifact:
    name: str
    data: bytes
    suffix: str = "zip"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def key(self) -> str:
        return f"artifacts/{self.name}/{self.sha256[:20]}.{self.suffix}"


def _files_under(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
        files.extend(
            Path(dirpath) / f
            for f in filenames
            if Path(f).suffix not in _SKIP_SUFFIXES and f not in _SKIP_FILES
        )
    return sorted(files)


def deterministic_zip(trees: list[tuple[Path, str]], extra: dict[str, bytes] | None = None) -> bytes:
    """Zip each (folder, prefix-in-zip) pair plus `extra` {name: content}; later ones win on clashes."""
    entries: dict[str, Path | bytes] = {}
    for root, prefix in trees:
        for path in _files_under(root):
            entries[f"{prefix}{path.relative_to(root).as_posix()}"] = path
    entries.update(extra or {})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, _FIXED_DATE)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            content = entries[name]
            archive.writestr(info, content if isinstance(content, bytes) else content.read_bytes())
    return buffer.getvalue()


def build_function_zip(function_dir: Path, extra: dict[str, bytes] | None = None) -> Artifact:
    """The function folder zipped as the task root, plus generated files (e.g. a signed bundle)."""
    if not (function_dir / "app.py").is_file():
        raise ConfigurationError(f"{function_dir}: a function folder needs an app.py with lambda_handler")
    return Artifact(function_dir.name, deterministic_zip([(function_dir, "")], extra))


def _layer_dependencies(requirements: Path, cache_dir: Path, uv: str) -> Path:
    """Install the layer's third-party wheels for the Lambda platform once per requirements hash."""
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    target = cache_dir / f"layer-deps-{digest}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    command = [
        uv,
        "pip",
        "install",
        "--quiet",
        "--target",
        str(target),
        "--requirement",
        str(requirements),
        "--python-platform",
        _LAMBDA_PLATFORM,
        "--python-version",
        _LAMBDA_PYTHON,
        "--only-binary",
        ":all:",
        # boto3 ships with the Lambda runtime; keeping it out of the layer mirrors AWS.
        "--no-installer-metadata",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigurationError(f"building layer dependencies failed:\n{result.stderr.strip()}")
    (target / ".complete").touch()
    return target


def build_layer_zip(layer_dir: Path, cache_dir: Path, uv: str) -> Artifact:
    """A layer zip laid out as AWS expects: python/<packages> (unpacked to /opt/python)."""
    source = layer_dir / "python"
    trees: list[tuple[Path, str]] = []
    requirements = layer_dir / "requirements.txt"
    if requirements.is_file():
        trees.append((_layer_dependencies(requirements, cache_dir, uv), "python/"))
    trees.append((source, "python/"))
    return Artifact(f"layer-{layer_dir.name}", deterministic_zip(trees))


def read_definition(path: Path) -> Artifact:
    """A state machine definition file, uploaded as it is (its ${...} are substituted by SAM)."""
    return Artifact(path.stem.removesuffix(".asl"), path.read_bytes(), suffix="json")

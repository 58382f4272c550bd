"""Per-version folders: the function's code (its /var/task) and its layers merged (its /opt)."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from localstack import config
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, HotReloadingCode, S3Code
from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException

from aob_lambda_executor import _settings

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionLayout:
    root: Path

    @classmethod
    def of(cls, version: FunctionVersion) -> VersionLayout:
        # internal_revision changes with code or configuration, not with state updates, so a new
        # $LATEST never shares a folder with the one it replaces (cleaned up after it starts).
        vid = version.id
        name = f"{vid.function_name}-{vid.qualifier.lstrip('$')}-{version.config.internal_revision}"
        return cls(_settings.work_dir() / "versions" / vid.account / vid.region / name)

    @property
    def task_dir(self) -> Path:
        return self.root / "task"

    @property
    def opt_dir(self) -> Path:
        return self.root / "opt"


def prepare(version: FunctionVersion) -> None:
    """Unpacks code and layers (in order, later ones overwriting, as on AWS) unless done already."""
    code = _supported_code(version)
    layout = VersionLayout.of(version)
    if layout.root.exists():
        return
    layout.root.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and renamed into place, so a half-unpacked folder is never used.
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=layout.root.parent))
    try:
        code.prepare_for_execution()
        shutil.copytree(code.get_unzipped_code_location(), staging / "task", symlinks=True)
        (staging / "opt").mkdir()
        for layer in version.config.layers:
            if layer.code is None:
                continue
            layer.code.prepare_for_execution()
            shutil.copytree(
                layer.code.get_unzipped_code_location(), staging / "opt", symlinks=True, dirs_exist_ok=True
            )
        _check_size(staging)
        staging.rename(layout.root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cleanup(version: FunctionVersion) -> None:
    shutil.rmtree(VersionLayout.of(version).root, ignore_errors=True)


def _supported_code(version: FunctionVersion) -> S3Code | HotReloadingCode:
    """The function's zip code, if the executor can run it."""
    runtime, code = version.config.runtime, version.config.code
    if runtime is None or code is None:
        raise LambdaRuntimeException(
            f"{version.qualified_arn}: container image functions are not supported by the aob-subprocess "
            "executor; deploy a zip package with a python runtime"
        )
    if not runtime.startswith("python"):
        raise LambdaRuntimeException(
            f"{version.qualified_arn}: runtime {runtime} is not supported by the aob-subprocess executor, "
            "which runs python runtimes only"
        )
    if runtime != (local := _interpreter_runtime()):
        LOG.warning("%s declares %s but runs on %s locally", version.qualified_arn, runtime, local)
    return code


@functools.cache
def _interpreter_runtime() -> str:
    version = subprocess.run(
        [str(_settings.runtime_python()), "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"python{version}"


def _check_size(folder: Path) -> None:
    """AWS's limit on a function's code and all its layers together, unzipped."""
    size = sum(
        os.lstat(os.path.join(directory, name)).st_size
        for directory, _, files in os.walk(folder)
        for name in files
    )
    limit = config.LAMBDA_LIMITS_CODE_SIZE_UNZIPPED
    if size > limit:
        raise LambdaRuntimeException(
            f"Function code combined with layers exceeds the maximum allowed size of {limit} bytes. "
            f"The actual size is {size} bytes."
        )

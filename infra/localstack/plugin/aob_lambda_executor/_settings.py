"""Where the executor finds the runtime interpreter and keeps its files (read at use, not import)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from localstack.services.lambda_.invocation.runtime_executor import LambdaRuntimeException

PYTHON_VAR = "AOB_LAMBDA_PYTHON"
WORK_DIR_VAR = "AOB_LAMBDA_WORK_DIR"


def runtime_python() -> Path:
    """The Lambda runtime's interpreter: stdlib and boto3 only, like AWS's python runtime.

    Not resolved: a venv's bin/python symlink is what makes its site-packages the runtime's.
    """
    value = os.environ.get(PYTHON_VAR)
    if not value or not os.access(value, os.X_OK):
        raise LambdaRuntimeException(
            f"{PYTHON_VAR} is {value!r}: set it to the python of the Lambda runtime venv "
            "(infra/localstack/ctl.py does; 'make setup' creates .state/venvs/lambda-runtime)"
        )
    return Path(value)


def work_dir() -> Path:
    return Path(os.environ.get(WORK_DIR_VAR) or Path(tempfile.gettempdir()) / "aob-lambda")

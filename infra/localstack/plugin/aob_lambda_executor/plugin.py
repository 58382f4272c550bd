"""The plux plug-in LocalStack selects with LAMBDA_RUNTIME_EXECUTOR=aob-subprocess."""

from __future__ import annotations

from typing import Any

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class AobSubprocessExecutorPlugin(RuntimeExecutorPlugin):
    name = "aob-subprocess"

    def load(self, *args: Any, **kwargs: Any) -> type:
        # Imported on selection only: plux loads this module just to list plug-ins.
        from aob_lambda_executor.executor import AobSubprocessRuntimeExecutor

        return AobSubprocessRuntimeExecutor

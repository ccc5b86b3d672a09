"""Where a flow's partitioned tasks run: on a Dask cluster when SLM_DASK_ADDRESS names its
scheduler, in Prefect's default thread pool otherwise.

The choice is made as each flow run starts, not when the flow module is imported, so the CLI,
the demo, deployments served by a worker and tests all follow the setting of the moment
(`flow.with_options(task_runner=...)` still overrides it for one call).
"""

from __future__ import annotations

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from licenseflow.settings import get_settings


def configured_task_runner() -> TaskRunner:
    """A DaskTaskRunner on the configured scheduler, or Prefect's default runner."""
    address = get_settings().dask_address
    if not address:
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner  # imports dask.distributed: only when asked for

    return DaskTaskRunner(address=address)


class ScaleOutTaskRunner(ThreadPoolTaskRunner):
    """Prefect's default runner whose copies follow the setting: every flow run starts on
    `task_runner.duplicate()`, and that copy is the configured runner."""

    def duplicate(self) -> TaskRunner:
        return configured_task_runner()

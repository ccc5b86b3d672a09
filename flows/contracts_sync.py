"""Contracts sync (lifecycle stage 1, inventory): new contract files from the drop folders."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.contracts import load_contracts_task
from tasks.sources import feed_files


@task(cache_policy=NO_CACHE)
def contract_files(files: list[str] | None) -> list[str]:
    return files or [str(path) for path, _fmt in feed_files("contracts")]


@task(cache_policy=NO_CACHE)
def publish_contracts_summary(loads) -> None:
    lines = ["# Contracts sync", ""]
    lines += [f"- {load.summary()}" for load in loads] or [
        "- no contract files in the drop folders"
    ]
    create_markdown_artifact("\n".join(lines), key="contracts-sync-summary")


@flow(name="contracts-sync", log_prints=True)
def contracts_sync(files: list[str] | None = None) -> list[str]:
    """Load each contract file not applied before (by checksum). A file with any bad row is
    refused whole and the run fails; the store keeps the previous contracts."""
    loads = [load_contracts_task(path) for path in contract_files(files)]
    publish_contracts_summary(loads)
    return [load.summary() for load in loads]

"""slm bulk-assign, slm approve, slm reject, slm rollback, slm bulk-status.

`slm bulk-assign` runs the bulk_assignment flow in this process (Prefect ephemeral mode unless
PREFECT_API_URL names a server). While it waits for approval, `slm approve BATCH --as NAME`
in another terminal records the decision and resumes the waiting run; with --no-wait the
command stops once approval is requested and `slm bulk-assign --resume BATCH` continues.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from licenseflow.errors import InputRejected, LicenseflowError

console = Console()
SHOWN_ERRORS = 50


def _me() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return ""


class _Watcher:
    """Prints a batch's state changes as they are committed, and a progress bar while it
    rolls out."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task = None

    def __call__(self, notice) -> None:
        if notice.kind == "progress" and notice.state == "pilot":
            console.print(f"{notice.batch_id} pilot: {notice.done} row(s) applied")
            return
        if notice.kind == "progress":
            if self.progress is None:
                self.progress = Progress(
                    TextColumn("rolling out"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("rows"),
                    TimeElapsedColumn(),
                    console=console,
                )
                self.progress.start()
                self.task = self.progress.add_task("rollout", total=notice.total)
            self.progress.update(self.task, completed=notice.done, total=notice.total)
            return
        self.stop()
        detail = f": {notice.detail}" if notice.detail else ""
        colour = {"failed": "red", "invalid": "red", "rolled_back": "yellow"}.get(
            notice.state, "cyan"
        )
        console.print(f"[{colour}]{notice.batch_id} {notice.state}[/{colour}]{detail}")
        if notice.kind == "state" and notice.state == "awaiting_approval":
            console.print(
                f"  waiting for approval: in another terminal run "
                f"[bold]slm approve {notice.batch_id} --as NAME[/bold] (or slm reject "
                f"{notice.batch_id}), or use the Resume form of this flow run in the Prefect UI"
            )

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@contextmanager
def _quiet_prefect_console(verbose: bool):
    """Our own lines tell the story; Prefect's console log (tracebacks of a refused file, for
    one) only with --verbose. Its logs to the API (the UI's run logs) are untouched."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [
        h
        for name in ("", "prefect", "prefect.flow_runs", "prefect.task_runs")
        for h in logging.getLogger(name).handlers
        if isinstance(h, PrefectConsoleHandler)
    ]
    levels = [h.level for h in handlers]
    if not verbose:
        for handler in handlers:
            handler.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


def _show_errors(exc: InputRejected) -> None:
    table = Table(title=f"{len(exc.errors)} problem(s); nothing was changed")
    for column in ("row", "column", "value", "reason"):
        table.add_column(column, overflow="fold")
    for e in exc.errors[:SHOWN_ERRORS]:
        value = "" if e.value is None else str(e.value)
        table.add_row("" if e.row is None else str(e.row), e.column or "", value, e.reason)
    console.print(table)
    if len(exc.errors) > SHOWN_ERRORS:
        console.print(f"... and {len(exc.errors) - SHOWN_ERRORS} more")
    console.print(f"[red]{str(exc).splitlines()[0]}[/red]")


def _show_impact(impact: dict) -> None:
    from tasks.bulk_impact import impact_table, money

    rows = impact_table(impact)
    table = Table(title="Impact preview")
    for column in rows[0] if rows else []:
        table.add_column(column, justify="left" if column in ("product", "metric") else "right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    costs = ", ".join(money(v, c) for c, v in impact["cost_change"].items()) or "none"
    console.print(
        f"{impact['rows']} row(s): {impact['adds']} seat(s) added, {impact['removes']} revoked, "
        f"{impact['no_change']} already in place; people affected: "
        f"{impact['people_affected']}, devices affected: {impact['devices_affected']}; yearly "
        f"cost change: {costs}"
    )


def register(app: typer.Typer, run_app: typer.Typer) -> None:
    @app.command("bulk-assign")
    def bulk_assign(
        file: Path = typer.Argument(None, help="CSV: action,product_code,user,device,pilot,note"),
        requester: str = typer.Option(None, "--requester", help="who asks (default: you)"),
        pilot_size: int = typer.Option(10, help="pilot rows when the file marks none (0: none)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="validate and preview only"),
        override_reason: str = typer.Option(
            None, "--override-reason", help="allow going over owned seats, for this reason"
        ),
        approval_timeout: int = typer.Option(86400, help="seconds to wait for a decision"),
        not_before: str = typer.Option(
            None, "--not-before", help="start an approved batch no earlier than this (ISO time)"
        ),
        no_wait: bool = typer.Option(
            False, "--no-wait", help="stop once approval is requested; continue with --resume"
        ),
        resume: str = typer.Option(None, "--resume", help="continue batch BATCH"),
        lock_wait: int = typer.Option(600, help="seconds to wait while another batch runs"),
        verbose: bool = typer.Option(False, "--verbose", help="show Prefect's log too"),
    ) -> None:
        """Apply a bulk assignment file: validate, back up, approve, pilot, roll out."""
        if (file is None) == (resume is None):
            console.print("[red]give a FILE, or --resume BATCH[/red]")
            raise typer.Exit(2)
        start = None
        if not_before:
            start = dt.datetime.fromisoformat(not_before)
            start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
        from flows.bulk_assignment import bulk_assignment
        from tasks.bulk_state import subscribe

        watcher = _Watcher()
        unsubscribe = subscribe(watcher)
        try:
            with _quiet_prefect_console(verbose):
                result = bulk_assignment(
                    file=None if file is None else str(file),
                    requester=requester or _me(),
                    pilot_size=pilot_size,
                    override_reason=override_reason,
                    dry_run=dry_run,
                    approval_timeout_seconds=approval_timeout,
                    not_before=start,
                    resume_batch=resume,
                    wait_for_approval=not no_wait,
                    lock_wait_seconds=lock_wait,
                )
        except InputRejected as exc:
            watcher.stop()
            _show_errors(exc)
            raise typer.Exit(1) from None
        except LicenseflowError as exc:
            watcher.stop()
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        except Exception as exc:
            watcher.stop()
            console.print(
                f"[red]{type(exc).__name__}: {exc}[/red]\n(see `slm bulk-status` for the "
                "batch's state; --verbose shows the traceback)"
            )
            raise typer.Exit(1) from None
        finally:
            watcher.stop()
            unsubscribe()
        if result.get("impact") and (dry_run or result["state"] == "awaiting_approval"):
            _show_impact(result["impact"])
        batch = result["batch_id"]
        hints = {
            "awaiting_approval": f"approve with `slm approve {batch} --as NAME`, then "
            f"`slm bulk-assign --resume {batch}`",
            "validated": f"dry run: nothing changed. Submit for real: `slm bulk-assign {file}` "
            f"(or continue this batch: `slm bulk-assign --resume {batch}`)",
            "rolled_out": f"undo it any time with `slm rollback {batch}`",
        }
        console.print(
            f"[bold]{batch}: {result['state']}[/bold] ({result['applied']} of {result['rows']} "
            f"row(s) applied). {hints.get(result['state'], '')}"
        )
        if result["state"] in ("rejected", "expired"):
            raise typer.Exit(1)

    def _decide(batch: str, decision: str, name: str, comment: str) -> None:
        from licenseflow.db import get_engine, unit_of_work
        from tasks.bulk_approval import decide, resume_waiting_run
        from tasks.bulk_state import get_batch

        engine = get_engine()
        try:
            state = decide(engine, batch, decision, name, comment)
            with unit_of_work(engine) as session:
                run_id = get_batch(session, batch).flow_run_id
        except LicenseflowError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        console.print(f"{batch}: {state} by {name}")
        resumed = bool(run_id) and resume_waiting_run(run_id, decision, name, comment)
        if resumed:
            console.print(f"the flow run waiting for it ({run_id}) continues")
        elif state == "approved":
            console.print(
                f"no flow run is waiting for it: continue with `slm bulk-assign --resume {batch}`"
            )

    @app.command()
    def approve(
        batch: str = typer.Argument(..., help="batch id, e.g. B-20261127-ab12"),
        name: str = typer.Option(..., "--as", help="your name (not the requester's)"),
        comment: str = typer.Option("", help="kept in the audit log"),
    ) -> None:
        """Approve a bulk batch that awaits approval (the requester cannot approve it)."""
        _decide(batch, "approve", name, comment)

    @app.command()
    def reject(
        batch: str = typer.Argument(..., help="batch id"),
        name: str = typer.Option(None, "--as", help="your name (default: you)"),
        comment: str = typer.Option("", help="why; kept in the audit log"),
    ) -> None:
        """Reject a bulk batch that awaits approval: nothing changes."""
        _decide(batch, "reject", name or _me(), comment)

    @app.command()
    def rollback(
        batch: str = typer.Argument(..., help="batch id"),
        name: str = typer.Option(None, "--as", help="who rolls back (default: you)"),
        lock_wait: int = typer.Option(600, help="seconds to wait while another batch runs"),
    ) -> None:
        """Restore every seat a bulk batch changed to its backup (safe to run again)."""
        from flows.rollback_bulk_assignment import rollback_bulk_assignment

        try:
            with _quiet_prefect_console(False):
                result = rollback_bulk_assignment(batch, name or _me(), lock_wait_seconds=lock_wait)
        except LicenseflowError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        console.print(f"[bold]{result['state']}[/bold]: {result['events'][-1]['detail']}")

    @app.command("bulk-status")
    def bulk_status(batch: str = typer.Argument(None, help="one batch's history")) -> None:
        """Recent bulk batches, or one batch's state history."""
        from licenseflow.db import get_engine
        from tasks.bulk import list_batches, summary

        engine = get_engine()
        if batch is None:
            table = Table(title="Bulk batches (newest first)")
            for column in ("batch", "state", "requester", "approver", "applied", "created", "file"):
                table.add_column(column, no_wrap=column in ("batch", "state", "created"))
            for b in list_batches(engine):
                table.add_row(
                    b["batch_id"],
                    b["state"],
                    b["requester"],
                    b["approver"],
                    f"{b['applied']}/{b['rows']}",
                    f"{b['created']:%Y-%m-%d %H:%M}",
                    b["file"],
                )
            console.print(table)
            return
        try:
            info = summary(engine, batch)
        except LicenseflowError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from None
        table = Table(
            title=f"{batch}: {info['state']} ({info['applied']}/{info['rows']} rows applied)"
        )
        for column in ("at", "state", "by", "detail"):
            table.add_column(column, overflow="fold")
        for e in info["events"]:
            table.add_row(f"{e['at']:%Y-%m-%d %H:%M:%S}", e["state"], e["actor"], e["detail"] or "")
        console.print(table)
        if info["backup"]:
            console.print(f"backup: {info['backup']} (sha256 {info['backup_checksum']})")

"""One exception type per kind of failure a user can act on."""

from __future__ import annotations

from dataclasses import dataclass


class LicenseflowError(Exception):
    """Base class: the message says what to fix."""


@dataclass(frozen=True)
class RowError:
    """One problem in one input row. row is 1-based as a person counts data rows
    (the header is row 0 for CSV; line number for log files)."""

    file: str
    row: int | None
    column: str | None
    value: object
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column {self.column!r}"
        value = "" if self.value is None else f" (value {self.value!r})"
        return f"{where}{value}: {self.reason}"


class InputRejected(LicenseflowError):
    """An input file was refused; nothing was changed in the store."""

    def __init__(self, file: str, errors: list[RowError], summary: str | None = None):
        self.file = file
        self.errors = errors
        head = summary or f"{file}: {len(errors)} problem(s); nothing was changed"
        shown = "\n".join(f"  - {e}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(f"{head}\n{shown}{more}")


class CapacityExceeded(LicenseflowError):
    """An assignment would go over the seats owned and no override was given."""


class AssignmentRefused(LicenseflowError):
    """An assignment or revocation is not allowed (terminated person, unknown device...)."""


class GuardTripped(LicenseflowError):
    """A safety guard refused a change that needs explicit confirmation."""


class BatchStateError(LicenseflowError):
    """A bulk batch is not in a state that allows the requested step."""


class AuditChainBroken(LicenseflowError):
    """The audit log's hash chain does not verify."""

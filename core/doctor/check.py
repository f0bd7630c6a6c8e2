"""One doctor finding: a named check with its status, what was seen and the concrete fix."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail", "info"]
GIB = 1 << 30


@dataclass
class Check:
    """What one check saw; `fix` says exactly what to do when the status is warn or fail."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    group: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failed_check(name: str, group: str, exc: BaseException) -> Check:
    """A check that could not run at all: reported, never raised, so the other checks still run."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return Check(name, "warn", f"could not check: {type(exc).__name__}: {first}",
                 fix="run `tunedeck doctor` again; if it persists, report it with this message", group=group)


def gib(value: float | int | None) -> str:
    """Bytes for people: GiB, or MiB below a tenth of one."""
    if value is None:
        return "?"
    return f"{value / GIB:.1f} GiB" if value >= GIB / 10 else f"{value / (1 << 20):.0f} MiB"

"""What the supervisor shows: the live table and the plain change lines (pure, tested).

Kept out of supervisor.py (a script) so that it stays short; supervisor.py
re-exports these names.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console
from rich.table import Table


@dataclass(frozen=True, slots=True)
class MemberRow:
    """One line of the live table; None means unknown (member down or not asked yet)."""

    name: str
    pid: int | None = None
    state: str = "starting"  # running | backoff <s> | exited | stopped | starting
    reachable: bool = False
    role: str | None = None
    term: int | None = None
    leader: str | None = None
    commit_index: int | None = None
    applied_index: int | None = None
    revision: int | None = None
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    restarts: int = 0


def status_lines(prev: Mapping[str, MemberRow], cur: Sequence[MemberRow]) -> list[str]:
    """Plain lines for --no-tui: leader changes and reachability flips, nothing else."""
    lines: list[str] = []
    for row in cur:
        old = prev.get(row.name)
        if row.reachable and row.role == "leader" and (
                old is None or old.role != "leader" or old.term != row.term):
            lines.append(f"{row.name} became leader at term {row.term}")
        if old is not None and old.reachable and not row.reachable and row.state == "running":
            lines.append(f"{row.name} is unreachable")
        elif row.reachable and (old is None or not old.reachable):
            lines.append(f"{row.name} is reachable ({row.role}, term {row.term})")
    return lines


def format_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n}B"
    value, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.1f}{unit}"


def _cell(value: object) -> str:
    return "?" if value is None else str(value)


def render_table(rows: Sequence[MemberRow], title: str = "etcdlite") -> Table:
    # Borderless with one space between columns: fits 100 columns; rich shrinks it below.
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  pad_edge=False, padding=0)
    for column in ("member", "pid", "state", "role", "term", "leader", "commit", "applied",
                   "rev", "cpu%", "rss", "restarts"):
        left = column in ("member", "state", "role", "leader")
        table.add_column(column, justify="left" if left else "right", no_wrap=True)
    for r in rows:
        role = r.role if r.reachable else "down"
        style = "bold green" if role == "leader" else ("red" if role == "down" else None)
        cpu = None if r.cpu_percent is None else f"{r.cpu_percent:.0f}"
        table.add_row(r.name, _cell(r.pid), r.state, _cell(role), _cell(r.term), _cell(r.leader),
                      _cell(r.commit_index), _cell(r.applied_index), _cell(r.revision), _cell(cpu),
                      format_bytes(r.rss_bytes), str(r.restarts), style=style)
    return table


def render_text(rows: Sequence[MemberRow], width: int = 120) -> str:
    """The table as plain text (tests, logs)."""
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None, force_terminal=False).print(
        render_table(rows))
    return buf.getvalue()

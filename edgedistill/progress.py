"""Shared rich progress bars and console, so every long step looks the same."""

from __future__ import annotations

import datetime as dt
import os
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)

PLAIN_EVERY_S = 60.0  # under CircleCI's 10-minute no-output timeout, sparse enough for an hours-long run's log


class _Progress(Progress):
    """A rich Progress that, with its live bar off, prints plain lines to stderr instead: one at each update
    that sets `info` (a logged row, the next item), else one at most every PLAIN_EVERY_S while it advances."""

    def __init__(self, *columns, **kwargs):
        super().__init__(*columns, **kwargs)
        self._plain_at: dict[TaskID, float] = {}

    def add_task(self, *args, **kwargs) -> TaskID:
        task = super().add_task(*args, **kwargs)
        self._plain_at[task] = time.monotonic()
        return task

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        if self.disable:
            self._plain(task_id, "info" in kwargs)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.disable:
            self._plain(task_id, False)

    def _plain(self, task_id: TaskID, news: bool) -> None:
        now = time.monotonic()
        if not news and now - self._plain_at.get(task_id, now) < PLAIN_EVERY_S:
            return
        self._plain_at[task_id] = now
        task = self._tasks[task_id]
        total = f"/{task.total:.0f}" if task.total is not None else ""
        info = " ".join(str(task.fields.get("info", "")).split())  # the bar's column spacing is not a log's
        left = task.time_remaining
        eta = str(dt.timedelta(seconds=int(left))) if left is not None else "-:--:--"
        # print, not the console: no markup, colour or wrapping even where FORCE_COLOR is set
        print(f"{task.description} {task.completed:.0f}{total}{' ' + info if info else ''} eta {eta}", file=sys.stderr, flush=True)


def bar_disabled() -> bool:
    """No live bar in CI, without a terminal (a log gets no redraws) or with EDGEDISTILL_NO_PROGRESS=1."""
    return os.environ.get("EDGEDISTILL_NO_PROGRESS") == "1" or os.environ.get("CI", "").lower() in ("true", "1") or not sys.stderr.isatty()


def progress_bar(transient: bool = False) -> Progress:
    """A progress bar with count, elapsed time and ETA; the `info` field shows live metrics.
    Where the bar is off (bar_disabled), the same updates print plain periodic lines (_Progress)."""
    return _Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
        disable=bar_disabled(),
    )

"""Shared rich progress bars and console, so every long step looks the same."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress_bar(transient: bool = False) -> Progress:
    """A progress bar with count, elapsed time and ETA; the `info` field shows live metrics."""
    disable = os.environ.get("EDGEDISTILL_NO_PROGRESS") == "1" or not sys.stderr.isatty() and os.environ.get("CI") == "true"
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=transient,
        disable=disable,
    )

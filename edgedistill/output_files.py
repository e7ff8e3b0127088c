"""Checks on a command's output file, made before any model is built: a typo must never overwrite an input
or a file of another kind, and a folder that cannot take the file must fail now, not after an hour's work."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import EdgedistillError


def check_replaceable(out: Path, what: str, inputs: dict, holds_ours: Callable[[Path], bool] | None, example: str) -> None:
    """OUT is a file path, none of `inputs` ({"the sentences file": path, ...}; None values skipped), and replaces
    only a file that `holds_ours` recognises (None: any file may be replaced)."""
    if out.is_dir():
        raise EdgedistillError(f"{what} '{out}' is a folder", f"pass a file path, e.g. {example}")
    for name, given in inputs.items():
        if given is not None and os.path.realpath(out) == os.path.realpath(os.path.expanduser(str(given))):  # never raises
            raise EdgedistillError(f"{what} '{out}' is {name}, which it would replace", f"write it to another path, e.g. {example}")
    if holds_ours is not None and out.exists() and not holds_ours(out):
        raise EdgedistillError(f"{what} '{out}' exists and holds no {what}, so it is not replaced",
                               f"pass a new path, or delete the file if it is a damaged {what} file")


def check_suffix(out: Path, suffix: str, what: str) -> None:
    """OUT is named as the file it will be (a checkpoint saved as .pt would be read as pickle by other tools)."""
    if out.suffix != suffix:
        raise EdgedistillError(f"{what} '{out}' must be a {suffix} file", f"name it {out.with_suffix(suffix).name}")


def check_writable(path: Path, what: str) -> None:
    """Try a file beside `path` now (creating its folder): a folder that cannot hold it would otherwise fail
    only once the work is done."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name[:200]}.probe-"):
            pass
    except OSError as exc:
        raise EdgedistillError(f"cannot write {what} '{path}': {exc.strerror or type(exc).__name__}",
                               "pass a path in a folder you can write to") from None

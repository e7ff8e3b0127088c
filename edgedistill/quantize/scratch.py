"""Scratch folders for the quantize stage's model-sized trial files, kept in the build folder."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..artifacts import remove_orphans
from ..errors import EdgedistillError

SCRATCH = "quantize-scratch"
FULL_BYTES = 1 << 20  # free space below this after a failure: the disk that filled up


@contextlib.contextmanager
def scratch_dir(beside: Path) -> Iterator[Path]:
    """A temp folder for model-sized trial files in `beside`'s folder (the build folder, not $TMPDIR),
    named with this process's id: a run killed before its cleanup (SIGKILL) leaves it where the next
    one, which first removes those of dead processes, finds it. onnxruntime's quantizer makes its own
    temp folders (`ort.quant.*`, `pre.quant.*`, model-sized) with no folder argument, so Python's temp
    folder points in here meanwhile: a SIGKILL leaves them inside this one, where the sweep reaches them."""
    folder = Path(beside).parent
    folder.mkdir(parents=True, exist_ok=True)
    remove_orphans(folder / SCRATCH)  # .quantize-scratch.partial-*-PID whose PID is gone
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{SCRATCH}.partial-", suffix=f"-{os.getpid()}") as tmp:
        previous, tempfile.tempdir = tempfile.tempdir, tmp
        try:
            yield Path(tmp)
        except Exception as exc:
            # On a full disk onnx.save names no file, and onnx's shape inference (inside quantize_static) writes a
            # truncated model without a word, read back as "Wire format was corrupt": when this folder's disk is the
            # full one, say so
            told = isinstance(exc, EdgedistillError) or (isinstance(exc, OSError) and exc.filename)
            if not told and shutil.disk_usage(tmp).free < FULL_BYTES:
                where = folder.parent if folder.name.startswith(f".{SCRATCH}.") else folder  # one inside another's: the build's folder
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where)) from exc
            raise
        finally:
            tempfile.tempdir = previous

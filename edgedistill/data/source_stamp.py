"""What a stage key knows of an image source: a stamp that changes when its images do.

A source of up to CONTENT_STAMP_BYTES is stamped by content, with names relative to its folder: a
fresh git checkout or a copy (new mtimes, another path) is the same source, so a CI job that restores
a build folder from its cache reuses the distilled student instead of training again. A larger one is
stamped by names, sizes and mtimes: reading it all would cost minutes on every command, and on the
machines that hold such sources (a cluster's data disk) mtimes do not change under it.
"""

from __future__ import annotations

import hashlib
import os

from ..artifacts import file_digest
from .images import ImageSource, _size_and_mtime
from .shards import shard_paths
from .sources import resolve_image_paths

CONTENT_STAMP_BYTES = 1 << 30  # about 2 s of hashing on the 2-core CI VM
CONTENT = "content-"  # how a content stamp begins: the stage key then leaves the source's path text out


def source_files(source: str, max_images: int | None = None) -> list:
    """The files an image source reads: its .tar shards (not indexed), else its images (listed, not decoded).
    An EdgedistillError where the source does not exist or holds none."""
    files = shard_paths(source) if source != "bundled" else None
    return files if files is not None else resolve_image_paths(source, max_images)


def source_stamp(source: "str | ImageSource", max_images: int | None = None, legacy: bool = False) -> str:
    """A hash of the files an image source reads; `legacy` is the names-sizes-mtimes stamp of every
    source, which build folders made before content stamps recorded in their keys. Shards are stamped
    by their files alone, without indexing every member; a folder costs one listing and one stat per
    file used (0.32 s for 20k files on the 2-core CI VM's local disk), plus the reading of a small one."""
    if isinstance(source, ImageSource):  # already listed: no second scan of the folder
        files = source.tars.shards if source.tars is not None else source.paths
    else:
        files = source_files(source, max_images)
    stats = [_size_and_mtime(f) for f in files]
    if legacy or sum(stat[0] for stat in stats if stat) > CONTENT_STAMP_BYTES:
        return hashlib.sha256(repr([(str(f), stat) for f, stat in zip(files, stats)]).encode()).hexdigest()[:16]
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files]) if files else ""
    entries = [(os.path.relpath(os.path.abspath(f), root), stat and stat[0], stat and _digest(str(f))) for f, stat in zip(files, stats)]
    return CONTENT + hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def _digest(path: str) -> str | None:
    try:
        return file_digest(path)  # a source stamped twice in one process is read once
    except OSError:  # gone or unreadable since its stat: the stage that reads it reports it
        return None

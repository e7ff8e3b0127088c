"""webdataset-style .tar shards read as a map-style source (random access, exact resume).

Each image member is located once (name, data offset, size); reading seeks into the tar, so
no webdataset install is needed and any sample can be fetched by index.
"""

from __future__ import annotations

import glob
import io
import re
import tarfile
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from ..errors import EdgedistillError
from .sources import walk_files

SHARD_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".ppm", ".pgm", ".tif", ".tiff"}
_PREFERRED = ("jpg", "jpeg", "png", "webp")  # the image of a sample with several, in this order, then the first other
OPEN_SHARDS = 32  # file handles a process keeps: thousands of shards must not exhaust `ulimit -n`


def expand_braces(pattern: str) -> list[str]:
    """'train-{000..002}.tar' -> ['train-000.tar', 'train-001.tar', 'train-002.tar'] (webdataset syntax)."""
    match = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if not match:
        return [pattern]
    lo, hi = match.group(1), match.group(2)
    width = len(lo)
    out = []
    for i in range(int(lo), int(hi) + 1):
        out += expand_braces(pattern[: match.start()] + str(i).zfill(width) + pattern[match.end():])
    return out


def shard_paths(source: str) -> list[Path] | None:
    """The .tar shards a source names (a .tar, a brace pattern, a glob, or a folder of .tar files), else None."""
    root = Path(source).expanduser()
    if root.is_dir():
        tars = sorted(p for p in root.glob("*.tar") if not p.name.startswith("."))  # "._x.tar": macOS metadata
        if not tars:
            return None
        stray = next((p for p in walk_files(root) if p.suffix.lower() in SHARD_IMAGE_SUFFIXES), None)
        if stray is not None:  # either reading would silently drop the other half of the data
            raise EdgedistillError(f"'{source}' holds both .tar shards and image files (e.g. {stray.relative_to(root)})",
                                   f"point data.source at the shards ('{root / '*.tar'}') or at a folder of images only")
        return tars
    if not source.endswith(".tar"):
        return None
    paths = []
    for part in expand_braces(source):
        if any(c in part for c in "*?[") and not Path(part).expanduser().is_file():  # 'shards [v2]/a.tar' is a file, not a glob
            matched = sorted(Path(p) for p in glob.glob(str(Path(part).expanduser())))
            if not matched:
                raise EdgedistillError(f"'{part}' matches no tar shards", "check data.source (e.g. /data/train-*.tar or /data/train-{000000..000099}.tar)")
            paths += matched
        else:
            paths.append(Path(part).expanduser())
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise EdgedistillError(f"tar shard '{missing[0]}' does not exist", "check data.source (e.g. /data/train-{000000..000099}.tar)")
    return paths


def _tar_problem(path: str, exc: BaseException) -> str:
    """One line for why a shard could not be read as an uncompressed tar."""
    if isinstance(exc, tarfile.ReadError):
        try:
            with tarfile.open(path):  # any compression tarfile knows
                return "it is a compressed tar, and reading members by offset needs an uncompressed one"
        except (tarfile.TarError, OSError):
            return "it is not a tar archive (nor a gzip, bz2 or xz-compressed one)"
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


def one_image_per_sample(found: list[tuple[str, str, tuple]]) -> list[tuple]:
    """The members to train on. A key with a plain image (x.jpg) is one webdataset sample whose other
    images (x.seg.png, x.depth.png) are its fields: only the plain one is kept, jpg before jpeg, png,
    webp. Images that share a key with no plain image among them are ordinary names with dots
    (IMG_0001.120000.jpg, frame.0001.png): each stays an image of its own."""
    plain: dict[str, tuple[int, tuple]] = {}  # key -> (preference, member)
    for key, extension, member in found:
        if "." not in extension:
            rank = _PREFERRED.index(extension) if extension in _PREFERRED else len(_PREFERRED)
            if key not in plain or rank < plain[key][0]:
                plain[key] = (rank, member)
    kept, emitted = [], set()
    for key, _, member in found:
        if key not in plain:
            kept.append(member)
        elif key not in emitted:  # the sample, where its first member stood
            kept.append(plain[key][1])
            emitted.add(key)
    return kept


class TarShardImages:
    """Images inside tar shards, by index; a bad member is skipped and counted by the caller."""

    def __init__(self, shards: list[Path]):
        self.shards = [str(p) for p in shards]
        self.members: list[tuple[int, int, int, str]] = []  # (shard, offset, size, name)
        for s, path in enumerate(self.shards):
            found = []  # (webdataset key, extension, member) of each image member, in tar order
            try:
                with tarfile.open(path, "r:") as tar:  # "r:": offsets into a compressed stream would not seek
                    for info in tar:
                        folder, _, base = info.name.rpartition("/")
                        if not info.isfile() or base.startswith(".") or Path(base).suffix.lower() not in SHARD_IMAGE_SUFFIXES:
                            continue  # dotfiles: macOS tar's ._name metadata members
                        stem, _, extension = base.partition(".")  # webdataset's key: the name up to its first dot
                        found.append((f"{folder}/{stem}", extension.lower(), (s, info.offset_data, info.size, info.name)))
            except (tarfile.TarError, OSError) as exc:
                raise EdgedistillError(f"cannot read tar shard '{path}': {_tar_problem(path, exc)}",
                                       "re-create the shard as an uncompressed .tar (e.g. gunzip it) or drop it from data.source") from exc
            self.members += one_image_per_sample(found)
        self._handles: OrderedDict[int, object] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self.members)

    def name(self, index: int) -> str:
        s, _, _, name = self.members[index]
        return f"{self.shards[s]}:{name}"

    def relative_name(self, index: int) -> str:
        """The member's name with its shard's file name, not its folder: moving the shards keeps it."""
        s, _, _, name = self.members[index]
        return f"{Path(self.shards[s]).name}:{name}"

    def open(self, index: int) -> Image.Image:
        s, offset, size, _ = self.members[index]
        handle = self._handles.get(s)
        if handle is None:  # opened lazily, so each DataLoader worker has its own handles
            if len(self._handles) >= OPEN_SHARDS:
                self._handles.popitem(last=False)[1].close()
            handle = self._handles[s] = open(self.shards[s], "rb")
        self._handles.move_to_end(s)
        handle.seek(offset)
        return Image.open(io.BytesIO(handle.read(size)))

    def __getstate__(self):
        return {**self.__dict__, "_handles": OrderedDict()}

"""Text embeddings for DIME-FM (vl.py): the primary teacher's text-tower embeddings of unpaired sentences.

`edgedistill embed-text` writes them once; distillation reads them at every step and never runs a text
tower. A safetensors file holding one float16 tensor `embeddings` [S, D] of L2-normalised rows, and a
stamp in its metadata: the teacher (teacher_identity.teacher_identity), its logit scale (CLIP's exp(logit_scale),
1/temperature), the sentence file's sha256, and S and D. The rows are written and read in place (numpy
memmap), so tens of millions of sentences need neither the RAM nor a second copy on disk.
Only the stamp is read without numpy and torch: the pipeline keys the distill stage by it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgedistillError, input_path

FORMAT = "edgedistill.text-embeddings/1"
TENSOR = "embeddings"
_ALIGN = 8  # safetensors pads its header so the data starts aligned


def _header(count: int, dim: int, stamp: dict) -> bytes:
    header = {TENSOR: {"dtype": "F16", "shape": [count, dim], "data_offsets": [0, count * dim * 2]},
              "__metadata__": {"edgedistill": json.dumps(stamp, sort_keys=True)}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-(8 + len(raw)) % _ALIGN)
    return struct.pack("<Q", len(raw)) + raw


def make_stamp(teacher: dict, logit_scale: float, sentences_sha256: str, count: int, dim: int) -> dict:
    return {"format": FORMAT, "teacher": teacher, "logit_scale": float(logit_scale), "sentences_sha256": sentences_sha256,
            "count": int(count), "dim": int(dim)}


class TextEmbeddingsWriter:
    """Writes rows in order into `tmp` (a temporary path: artifacts.atomic_output renames it when all are in)."""

    def __init__(self, tmp: Path, stamp: dict):
        import numpy as np

        self.stamp, self.written = stamp, 0
        head = _header(stamp["count"], stamp["dim"], stamp)
        size = len(head) + stamp["count"] * stamp["dim"] * 2
        with open(tmp, "wb") as f:
            f.write(head)
            _reserve(f, size, tmp)
        self.rows = np.memmap(tmp, dtype="<f2", mode="r+", offset=len(head), shape=(stamp["count"], stamp["dim"]))

    def add(self, embeddings) -> None:
        """Append a batch [n, D] (a torch tensor); rows are L2-normalised here, in float32, before the cast to float16."""
        import torch

        unit = torch.nn.functional.normalize(embeddings.detach().float(), dim=-1).cpu().numpy()
        self.rows[self.written:self.written + len(unit)] = unit
        self.written += len(unit)

    def close(self) -> None:
        if self.written != self.stamp["count"]:
            raise RuntimeError(f"wrote {self.written} of {self.stamp['count']} text embeddings")
        self.rows.flush()
        del self.rows


def _reserve(f, size: int, path: Path) -> None:
    """Allocate the whole file now: rows written through a memory map into a sparse file that the disk cannot
    hold end the process with SIGBUS, with no message and a partial file left behind."""
    import errno
    import os

    try:
        os.posix_fallocate(f.fileno(), 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate: sparse, as before
            f.truncate(size)
            return
        if exc.errno == errno.ENOSPC:
            raise EdgedistillError(f"the text embeddings need {size / 1e9:.2f} GB and the disk holding '{path.parent}' has less free",
                                   "free disk space, or write OUT to a larger disk") from exc
        raise


def read_stamp(path: Path) -> dict:
    """The stamp, or {} when `path` holds no text embeddings edgedistill can read: a stamp of the wrong types,
    or one the tensor header does not match (another dtype, another shape), counts as none."""
    return _stamp_and_offset(path)[0]


def _stamp_and_offset(path: Path) -> tuple[dict, int]:
    """(read_stamp's stamp, the byte offset of the rows: 8 + the header's length), from one read of the header."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size)) if size < 1 << 24 else {}
        stamp = json.loads(header.get("__metadata__", {}).get("edgedistill", "{}"))
        tensor = header.get(TENSOR, {})
    except (OSError, ValueError, TypeError, struct.error, AttributeError):
        return {}, 0
    if not _well_formed(stamp) or not isinstance(tensor, dict):
        return {}, 0
    matches = tensor.get("dtype") == "F16" and tensor.get("shape") == [stamp["count"], stamp["dim"]]
    return (stamp, 8 + size) if matches else ({}, 0)


def _well_formed(stamp) -> bool:
    def count(value, least):
        return isinstance(value, int) and not isinstance(value, bool) and value >= least

    return (isinstance(stamp, dict) and stamp.get("format") == FORMAT and isinstance(stamp.get("teacher"), dict)
            and isinstance(stamp.get("sentences_sha256"), str) and count(stamp.get("count"), 0) and count(stamp.get("dim"), 1)
            and isinstance(stamp.get("logit_scale"), (int, float)) and not isinstance(stamp.get("logit_scale"), bool)
            and 0 < stamp["logit_scale"] < float("inf"))


@dataclass
class TextEmbeddings:
    rows: object  # numpy [S, D] float16, memory-mapped
    stamp: dict

    @property
    def count(self) -> int:
        return self.rows.shape[0]

    @property
    def temperature(self) -> float:
        return 1.0 / self.stamp["logit_scale"]

    def take(self, indices, device):
        """Rows `indices` (a torch index tensor; all when None) as a float32 torch tensor on `device`."""
        import numpy as np
        import torch

        picked = self.rows if indices is None else self.rows[np.sort(indices.numpy())]  # sorted: sequential reads of the map
        return torch.from_numpy(np.array(picked, dtype=np.float32)).to(device)  # a copy: the map is read-only


def open_text_embeddings(path: str, teacher: dict, teacher_dim: int | None, key: str = "distill.text_embeddings") -> TextEmbeddings:
    """The embeddings at `path`, checked against the job's primary teacher: its identity, and its token width
    when `teacher_dim` is known (check_width later otherwise: a teacher is built only after this cheap check)."""
    with input_path(key, path):
        return _open(Path(path).expanduser(), path, teacher, teacher_dim, key)


def _open(file: Path, path: str, teacher: dict, teacher_dim: int, key: str) -> TextEmbeddings:
    make = _remake(path)
    if not file.is_file():
        raise EdgedistillError(f"{key} '{path}' does not exist or is not a file", make)
    stamp, head = _stamp_and_offset(file)
    if not stamp:
        raise EdgedistillError(f"{key} '{path}' holds no text embeddings edgedistill can read", make)
    from ..teacher_identity import comparable_identities

    made_by, wanted = comparable_identities(text_side(stamp["teacher"]), text_side(teacher))
    if made_by != wanted:
        raise EdgedistillError(f"{key} '{path}' was made by teacher {made_by.get('name')!r} "
                               f"({_differs(made_by, wanted)}), not this job's primary teacher {wanted.get('name')!r}", make)
    if teacher_dim is not None:
        check_width(stamp, teacher_dim, path, key)
    expected = head + stamp["count"] * stamp["dim"] * 2
    if file.stat().st_size != expected:
        raise EdgedistillError(f"{key} '{path}' is {file.stat().st_size} bytes, its header promises {expected} (cut short?)", make)
    if stamp["count"] < 1:
        raise EdgedistillError(f"{key} '{path}' holds no sentences", make)
    import numpy as np

    rows = np.memmap(file, dtype="<f2", mode="r", offset=head, shape=(stamp["count"], stamp["dim"]))
    return TextEmbeddings(rows, stamp)


def check_width(stamp: dict, teacher_dim: int, path: str, key: str = "distill.text_embeddings") -> None:
    if stamp["dim"] != teacher_dim:
        raise EdgedistillError(f"{key} '{path}' holds {stamp['dim']}-d rows, the teacher's embedding is {teacher_dim}-d",
                               _remake(path))


def _remake(path: str) -> str:
    return f"make them with `edgedistill embed-text SENTENCES.txt {path}` (the same teacher config)"


def _differs(stored: dict, wanted: dict) -> str:
    keys = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    return f"differing in {', '.join(keys)}" if keys else "another"


def text_side(identity: dict) -> dict:
    """A teacher identity less how the image teacher is held while distilling (teacher.dtype): embed in fp32 on
    one machine, distil with a bf16 teacher on another, and the text rows are the same rows."""
    return {k: v for k, v in identity.items() if k != "dtype"}


def hash_stamp(path: str) -> dict:
    """What a resume hash keeps of the file: its content by stamp, not its path (a job may move the file)."""
    stamp = read_stamp(Path(path).expanduser())
    if not stamp:
        return {"path": path}
    return {"sentences_sha256": stamp["sentences_sha256"], "teacher": text_side(stamp["teacher"]),
            "logit_scale": stamp["logit_scale"], "count": stamp["count"]}

"""Task-oriented transfer set (Vemulapalli et al., DESIGN.md): from a large pool of unlabelled images, keep the
ones nearest a few target-task images in the teacher's embedding space, and write them as a .txt image list
that data.source and cache-teacher read. Exact inner-product search over unit vectors (cosine) with faiss."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..artifacts import write_bytes_atomic
from ..config import BuildConfig
from ..data.images import ImageSource
from ..errors import EdgedistillError, MissingBackendError
from ..output_files import check_replaceable, check_writable


DEFAULT_PER_TARGET = 100


@dataclass
class TransferSet:
    paths: list[str]  # chosen pool images, in rounds: each target's nearest, then each one's second nearest, ...
    scores: np.ndarray  # each one's cosine to its nearest target image
    pool: int  # pool images listed
    pool_unreadable: int
    targets: int  # target images embedded
    targets_unreadable: int


def nearest_pool_images(pool: np.ndarray, targets: np.ndarray, per_target: int | None = None,
                        size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows, their best cosine to any target) for the union of each target's `per_target` nearest pool
    images, in rounds: every target's nearest, then every target's second nearest, ... (within a round better
    cosines first, ties by pool order, so a run is reproducible). `size` instead keeps the first `size` images
    of those rounds, searching deeper until the union holds that many, so every target contributes alike
    (the nearest images overall crowd around the targets with the most look-alikes). Rows must be unit vectors."""
    faiss = import_faiss()
    index = faiss.IndexFlatIP(pool.shape[1])  # exact search: the pool is embedded once, the search is cheap beside it
    index.add(np.ascontiguousarray(pool, dtype=np.float32))
    queries = np.ascontiguousarray(targets, dtype=np.float32)
    depth = min(per_target or -(-size // len(targets)), len(pool))
    while True:
        scores, rows = index.search(queries, depth)  # [targets, depth], each row nearest first
        chosen = _in_rounds(scores, rows)
        if size is None or len(chosen) >= size or depth == len(pool):
            chosen = chosen if size is None else chosen[:size]
            # exact, not the best searched pair: an image kept as one target's k-th may be nearer another target at k+1
            return chosen, (pool[chosen] @ queries.T).max(axis=1) if len(chosen) else np.zeros(0, np.float32)
        depth = min(depth * 2, len(pool))  # targets shared neighbours: search deeper


def _in_rounds(scores: np.ndarray, rows: np.ndarray) -> np.ndarray:
    rank = np.broadcast_to(np.arange(rows.shape[1]), rows.shape).ravel()
    flat_rows, flat_scores = rows.ravel(), scores.ravel()
    order = np.lexsort((flat_rows, -flat_scores, rank))  # by round, then cosine, then pool row
    _, first = np.unique(flat_rows[order], return_index=True)  # an image's first appearance places it
    return flat_rows[order][np.sort(first)]


def import_faiss():
    try:
        import faiss
    except ImportError as exc:
        raise MissingBackendError("faiss-cpu", "retrieval", "building a transfer set") from exc
    return faiss


def check_output(out: Path, pool: str | None = None, targets: str | None = None) -> None:
    """OUT must be a .txt file (what data.source reads as a list) that is none of the input lists."""
    check_replaceable(out, "transfer set", {"an input list (--pool)": pool, "an input list (--targets)": targets}, None,
                      "runs/transfer.txt")
    if out.suffix.lower() != ".txt":
        raise EdgedistillError(f"transfer set '{out}' must be a .txt file: data.source reads image lists by that suffix",
                               f"name it {out.with_suffix('.txt').name}")


def build_transfer_set(cfg: BuildConfig, pool: str, targets: str, per_target: int | None, out: Path,
                       pool_embeddings: Path | None = None, size: int | None = None) -> TransferSet:
    """Embed `targets` and `pool` with the config's primary teacher; write the chosen pool images to `out`.
    `pool_embeddings` keeps the pool's embeddings in a file, reused while teacher and pool are unchanged. Either
    `per_target` or `size` (how many images in all) says how many to keep; neither: 100 per target."""
    from ..models.teacher import create_primary_teacher, hold_for_distillation
    from .embed import embed_images
    from .trainer import autocast_for, pick_device, uses_bf16

    if per_target is not None and size is not None:
        raise EdgedistillError("--per-target and --size both say how many images to keep", "pass one of them")
    if size is None and per_target is None:
        per_target = DEFAULT_PER_TARGET
    for option, value in (("--per-target", per_target), ("--size", size)):
        if value is not None and value < 1:
            raise EdgedistillError(f"{option} must be at least 1, got {value}", f"pass {option} N with N >= 1")
    check_output(out, pool, targets)
    pool_images, target_images = _images("--pool", pool), _images("--targets", targets)
    if pool_images.tars is not None:
        raise EdgedistillError(f"pool '{pool}' is tar shards, and a transfer set is written as a list of image files",
                               "extract the shards into a folder, or pass a folder or .txt list of images as --pool")
    pool_images = _distinct_files(pool_images)
    # these checks come before the teacher runs over the pool, which may take hours
    check_listable(pool_images.paths)
    if pool_embeddings is not None:
        from . import pool_embeddings as kept

        kept.check_replaceable(Path(pool_embeddings), out, pool, targets)
        check_writable(Path(pool_embeddings), "--pool-embeddings")
    check_writable(out, "the transfer set")
    import_faiss()
    if cfg.teacher.extra:
        from ..progress import console

        console.print(f"transfer-set embeds with the primary teacher {cfg.teacher.name}; teacher.extra is not used")
    device = pick_device(cfg.distill.device)
    teacher = create_primary_teacher(cfg.teacher)
    hold_for_distillation([teacher], [cfg.teacher], uses_bf16(cfg.distill, device))  # teacher.dtype, as cache-teacher holds it
    teacher.to(device)
    autocast = autocast_for(cfg.distill, device)
    run = dict(device=device, autocast=autocast, batch_size=cfg.distill.batch_size, workers=cfg.distill.num_workers)
    target_rows, target_embeddings = embed_images(teacher, target_images, label="targets", **run)
    if len(target_rows) == 0:
        raise target_images.nothing_readable()
    pool_rows, embeddings, save_embeddings = _pool_embeddings(cfg, teacher, pool_images, run, pool_embeddings)
    chosen, scores = nearest_pool_images(embeddings, target_embeddings, per_target, size)
    paths = [os.path.abspath(pool_images.name(int(pool_rows[i]))) for i in chosen]
    result = TransferSet(paths, scores, len(pool_images), len(pool_images) - len(pool_rows),
                         len(target_rows), len(target_images) - len(target_rows))
    write_list(out, result, cfg.teacher.name, targets, f"{per_target} per target" if size is None else f"{size} asked in all")
    save_embeddings()  # after the list: a failure to keep the embeddings costs the next run time, not this run's list
    return result


def _pool_embeddings(cfg: BuildConfig, teacher, pool_images: ImageSource, run: dict, kept: Path | None):
    """(readable rows, embeddings, a call that keeps them) of the pool: from the `kept` file when it matches,
    else embedded, and then the call saves them to `kept` (warning, not failing, when it cannot)."""
    from ..progress import console
    from . import pool_embeddings
    from .embed import embed_images

    stamp = pool_embeddings.stamp_of(cfg.teacher, pool_images) if kept else None
    if kept:
        found, why_not = pool_embeddings.load_matching(kept, stamp)
        if found is not None:
            console.print(f"pool embeddings reused from {kept}")
            return (*found, lambda: None)
        console.print(f"embedding the pool: no usable embeddings in {kept} ({why_not})")
    rows, embeddings = embed_images(teacher, pool_images, label="pool", **run)
    if len(rows) == 0:
        raise pool_images.nothing_readable()

    def save() -> None:
        if kept:
            try:
                pool_embeddings.save(kept, stamp, rows, embeddings)
            except OSError as exc:
                console.print(f"warning: could not keep the pool embeddings in {kept} ({exc.strerror or type(exc).__name__}); the next run embeds the pool again")

    return rows, embeddings, save


def _distinct_files(pool_images: ImageSource) -> ImageSource:
    """Each file once: a pool list naming a file twice, or a folder holding a link beside its target, would
    put the file in the transfer set twice (and count it twice towards --size)."""
    seen, paths = set(), []
    for i, path in enumerate(pool_images.paths):
        identity = pool_images.identity(i)
        if identity not in seen:
            seen.add(identity)
            paths.append(path)
    return pool_images if len(paths) == len(pool_images) else ImageSource(pool_images.source, paths=paths)


def _images(option: str, source: str) -> ImageSource:
    """The source's errors name the option it came from, not data.source."""
    try:
        return ImageSource(source)
    except EdgedistillError as exc:
        fix = exc.fix.replace("data.source=", f"{option} ")
        if option == "--pool":  # a pool cannot be tar shards: the list names files
            fix = fix.replace(", a folder of images, a .txt list or .tar shards", ", a folder of images or a .txt list")
        raise EdgedistillError(f"{option}: {exc.cause}", fix) from exc


def write_list(out: Path, result: TransferSet, teacher: str, targets: str, asked: str) -> None:
    """One absolute path per line, in rounds (nearest_pool_images); '#' lines (which image lists skip) say how it was made."""
    lowest = float(result.scores.min()) if len(result.scores) else math.nan
    header = [f"# edgedistill transfer-set: {len(result.paths)} of {result.pool} pool images nearest {result.targets} target images",
              f"# teacher {teacher}; targets {_one_line(targets)}; {asked}; lowest cosine {lowest:.4f}"]
    write_bytes_atomic(out, ("\n".join(header + result.paths) + "\n").encode())


def _one_line(text: str) -> str:
    return " ".join(text.encode(errors="replace").decode().split())  # a '#' line stays one line of UTF-8


def check_listable(paths: list[str]) -> None:
    """An image list holds one stripped UTF-8 path per line: a name with a line break, spaces at its ends or
    bytes that are no UTF-8 cannot be written into one."""
    for path in map(os.path.abspath, paths):
        if path != path.strip() or "\n" in path or "\r" in path or not _utf8(path):
            raise EdgedistillError(f"pool image {path!r} has a name an image list cannot hold (a line break, edge spaces or non-UTF-8 bytes)",
                                   "rename that file, or leave it out of the pool")


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # undecodable bytes in a file name reach Python as lone surrogates
        return False
    return True

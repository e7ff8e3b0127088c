"""One process at a time in a build folder or a teacher cache: an advisory file lock that names its holder."""

from __future__ import annotations

import errno
import os
import weakref
from pathlib import Path

from .errors import EdgedistillError

LOCK = ".lock"  # in a build folder: the FolderLock of the process using it (its Pipeline)


class FolderLock:
    """Exclusive use of a folder by one process, for as long as this object lives (or until release()).

    An advisory lock (flock) on `path`, a file holding the holder's pid: the kernel drops it when the
    process dies, so a killed run never leaves a stale lock. A second process is refused with an
    EdgedistillError naming the holder; this process may take it again (tests, a command inside
    another). Where the file system cannot lock, or the folder is not writable here, it goes on
    unlocked, as before."""

    _held: dict[str, list] = {}  # lock file -> [open file, holders] in this process

    def __init__(self, path: Path, what: str, fix: str):
        self.key = os.path.realpath(path)
        if self.key not in self._held:
            handle = _lock_file(Path(path), what, fix)
            if handle is None:
                self._release = lambda: None
                return
            self._held[self.key] = [handle, 0]
        self._held[self.key][1] += 1
        self._release = weakref.finalize(self, FolderLock._drop, self.key)

    @classmethod
    def _drop(cls, key: str) -> None:
        held = cls._held.get(key)
        if held is not None:
            held[1] -= 1
            if held[1] == 0:
                del cls._held[key]
                _unlock(held[0])  # now, for every copy of the file: a forked child's copy would keep it otherwise
                held[0].close()

    def release(self) -> None:
        self._release()

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _close_in_forked_child() -> None:
    """A forked child inherits the lock files: OpenVINO's convert_model forks one to send its telemetry, which
    can outlive the command. Closing the child's copies (not unlocking them) leaves the parent's locks held,
    and a child the parent outlives no longer holds the folder after a parent killed before its _drop."""
    for handle, _ in FolderLock._held.values():
        try:
            handle.close()
        except OSError:
            pass
    FolderLock._held.clear()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_close_in_forked_child)


def _lock_file(path: Path, what: str, fix: str):
    """The open lock file, locked; None when locking is not possible here."""
    try:
        handle = open(path, "a+")
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):  # nothing this process could overwrite there
            return None
        raise
    try:
        locked = _try_lock(handle)
    except OSError:  # a file system without locks (some network or FUSE mounts)
        locked = True
    if not locked:
        pid = _holder(handle)
        handle.close()
        raise EdgedistillError(f"{what} is in use by another edgedistill process ({f'pid {pid}' if pid.isdigit() else 'pid unknown'})", fix)
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _holder(handle) -> str:
    """The pid the lock file names ("" where it cannot be read)."""
    try:
        handle.seek(0)
        return handle.read().strip()
    except OSError:  # Windows: the holder's locked byte cannot be read
        return ""


def _unlock(handle) -> None:
    """Release the lock for the open file, however many processes hold a copy of it (flock is the file's,
    not the process's: closing one copy leaves it held while a forked child keeps another)."""
    try:
        import fcntl
    except ImportError:  # Windows: closing the file releases its byte-range lock
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    except OSError:  # a file system without locks: there is nothing to release
        pass


def _try_lock(handle) -> bool:
    """False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows: a byte-range lock on the first byte (readers then see no pid), else none
        try:
            import msvcrt
        except ImportError:
            return True
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True

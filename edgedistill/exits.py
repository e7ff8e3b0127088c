"""How a command ends: SIGTERM as an interruption, the exit codes, and OS errors a user can fix."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading

import click


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C: code that treats an interruption as one (the pipeline records the
    failed stage with no traceback, finally blocks remove temp files) treats this one alike. DataLoader
    workers keep torch's own SIGTERM handler: a SIGTERM to the whole process group kills them, and torch
    then prints a "worker killed by signal" note after the one-line message."""

    def __init__(self):
        super().__init__("terminated by SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a CI cancel or timeout) ends the command as Ctrl-C does, so finally blocks remove temp
    files and the manifest records the failure; by default it kills the process where it stands."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield  # signals reach only the main thread; an embedding program's own handler stays
        return
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:  # a forked child (a DataLoader worker) inherited this: it dies as it always did
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def terminated() -> int:
    click.echo("terminated (SIGTERM)", err=True)
    return 128 + signal.SIGTERM  # the shell's code for a process SIGTERM ended


def cause_chain(exc: BaseException) -> list[BaseException]:
    chain = [exc]
    while (exc := exc.__cause__ or exc.__context__) is not None and exc not in chain:
        chain.append(exc)
    return chain


# Disk problems are the user's to fix, not tracebacks; atomic writes leave the previous outputs intact
INTERNAL_ERROR = 3
DISK_FIXES = {
    errno.ENOSPC: "free space there or choose another --out",
    errno.EDQUOT: "free space there or choose another --out",
    errno.EFBIG: "raise the file-size limit (ulimit -f unlimited) or choose an --out on a filesystem without a 4 GiB file limit (not FAT32)",
    errno.EROFS: "choose a writable --out folder (a build folder on a read-only disk: copy it somewhere writable)",
    errno.ENAMETOOLONG: "choose a shorter name: a file or folder name holds at most 255 bytes, and edgedistill writes beside it under the name plus about 20",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.ENOTDIR: "a file stands where the path needs a folder: choose another --out",
    errno.EEXIST: "a file stands where the path needs a folder: choose another --out",
}

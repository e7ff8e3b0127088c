"""Keep the thread's signal stack valid across OpenVINO calls.

OpenVINO's CPU plugin gives the thread that loads it a larger sigaltstack (room for AMX state)
and, when the plugin is destroyed, unmaps it and puts back the stack it found, but only when its
own is still the current one. Each ov.Core loads its own plugin (NNCF makes several), so two
plugins destroyed in the order they were made leave the thread on an unmapped stack. The next
signal that reaches a Python handler (CPython installs them SA_ONSTACK: SIGINT, or the SIGCHLD
handler a DataLoader with workers sets) then kills the process with SIGSEGV.

`kept_signal_stack()` ends each OpenVINO scope with the thread on a stack this module owns and
never frees. A plugin destroyed later finds its stack not current and leaves ours alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)
AT_MINSIGSTKSZ = 51  # getauxval key: the kernel's minimum signal frame, AMX state included
MIN_STACK_BYTES = 256 * 1024


class StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_owned = threading.local()  # per thread: sigaltstack is a per-thread setting
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def current_signal_stack() -> StackT | None:
    """The calling thread's sigaltstack, or None where there is none to query (not Linux)."""
    if _libc is None:
        return None
    stack = StackT()
    if _libc.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack


def signal_stack_is_valid() -> bool:
    """True when the calling thread has no signal stack, or one in mapped memory (always True off Linux)."""
    stack = current_signal_stack()
    if stack is None or stack.ss_flags & 2 or not stack.ss_sp:  # 2: SS_DISABLE
        return True
    for line in Path("/proc/self/maps").read_text().splitlines():
        start, end = (int(x, 16) for x in line.split(" ", 1)[0].split("-"))
        if start <= stack.ss_sp < end:
            return True
    return False


def _owned_stack() -> StackT:
    if getattr(_owned, "stack", None) is None:
        _libc.getauxval.restype, _libc.malloc.restype = ctypes.c_ulong, ctypes.c_void_p
        size = max(MIN_STACK_BYTES, int(_libc.getauxval(AT_MINSIGSTKSZ)) * 4)
        # malloc'd, never freed: a signal may come until the process ends, after Python's own objects are gone
        _owned.stack = StackT(_libc.malloc(ctypes.c_size_t(size)), 0, size)
    return _owned.stack


def use_owned_signal_stack() -> None:
    """Point the calling thread at this module's stack unless it already is."""
    current = current_signal_stack()
    if current is None:
        return
    stack = _owned_stack()
    if not stack.ss_sp:  # malloc failed: leave the stack as it is
        return
    if current.ss_sp == stack.ss_sp and not current.ss_flags & 2:  # 2: SS_DISABLE
        return
    if _libc.sigaltstack(ctypes.byref(stack), None) != 0:
        log.debug("could not set the signal stack (errno %d); leaving it as OpenVINO left it", ctypes.get_errno())


@contextlib.contextmanager
def kept_signal_stack():
    """Run an OpenVINO scope (compile, NNCF quantization, a Core's device query) and leave the
    thread on a valid signal stack afterwards, even when the scope raised."""
    try:
        yield
    finally:
        use_owned_signal_stack()

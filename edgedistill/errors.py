"""User-facing errors: a one-line cause plus a fix; the CLI prints them and exits with code 2."""

import errno
import os
from contextlib import contextmanager


class EdgedistillError(Exception):
    """An error the user can fix. `cause` says what went wrong, `fix` what to do about it."""

    exit_code = 2

    def __init__(self, cause: str, fix: str = ""):
        super().__init__(cause)
        self.cause = cause
        self.fix = fix

    def one_line(self) -> str:
        return f"{self.cause} (fix: {self.fix})" if self.fix else self.cause


class MissingBackendError(EdgedistillError):
    """An optional runtime is not installed; the fix names the pip extra."""

    def __init__(self, package: str, extra: str | None, purpose: str):
        # Optional runtimes come from an extra; core ones were lost from the environment.
        fix = f"pip install 'edgedistill[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs '{package}', which is not installed", fix)
        self.package = package
        self.extra = extra


class GateError(EdgedistillError):
    """A CI gate (latency, fidelity, size) was violated."""

    exit_code = 1


@contextmanager
def input_path(setting: str, given: str):
    """A name too long for the file system, met while only *reading* a setting's path, names that setting;
    the CLI's disk handler would otherwise report it as a failed write."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        raise EdgedistillError(f"{setting} '{given}' holds a file or folder name longer than the file system allows (255 bytes on most)",
                               f"shorten that name in {setting}") from exc


def check_name_fits(setting: str, given: str) -> None:
    """Before any stage: a path setting whose name the file system cannot hold (a missing file is left to the
    stage that reads it, which says how to fix that)."""
    with input_path(setting, given):
        try:
            os.lstat(os.path.expanduser(given))
        except ValueError:  # a NUL byte ("\0" in YAML): no file system holds it
            raise EdgedistillError(f"{setting} {given!r} holds a NUL character, which no file or folder name can contain",
                                   f"remove it from {setting}") from None
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise

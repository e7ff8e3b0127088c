"""User-facing errors: a one-line cause plus a fix; the CLI prints them and exits with code 2."""


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

"""The exception hierarchy: callers catch the family they can handle, and the CLI turns any of them
into a clear message and a non-zero exit code instead of a traceback."""

from __future__ import annotations


class ResolverGuardError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(ResolverGuardError):
    """A policy file (or a list it names) is invalid; says where, so the user can fix it."""

    def __init__(self, problem: str, *, file: str = "<policy>", line: int | None = None, key: str = "") -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.key = key
        super().__init__(self.location())

    def location(self) -> str:
        """`file:line: key: problem`, the format `resolverguard check` prints (like a compiler)."""
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.problem}" if self.key else f"{where}: {self.problem}"


class ModelError(ResolverGuardError):
    """The model file or its metadata is missing, corrupt or inconsistent, or inference failed."""


class UpstreamError(ResolverGuardError):
    """No upstream gave a usable answer (timeout, refused connection, mismatched or garbage reply)."""

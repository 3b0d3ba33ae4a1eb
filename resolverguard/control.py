"""The control socket: a running server takes `pause`, `resume`, `status` and `lists update` from
the `resolverguard` command on the same machine, as `unbound-control` talks to unbound.

A Unix socket, not TCP: only local users with write access to it can use it (it is created mode
0600 in a directory of the server's own: `$RUNTIME_DIRECTORY` under systemd). One command per
connection, one line each way; the reply starts with `ok` or `error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

Handler = Callable[[list[str]], Awaitable[str]]
MAX_LINE = 1024


def default_socket() -> Path:
    """systemd's RuntimeDirectory=, else $XDG_RUNTIME_DIR, else a per-user folder in /tmp."""
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":", 1)[0]) / "control.sock"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(xdg) / "resolverguard" if xdg else Path(f"/tmp/resolverguard-{os.getuid()}")
    return base / "control.sock"


class ControlServer:
    def __init__(self, path: Path, handle: Handler) -> None:
        self.path, self.handle = path, handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listens on `path`; a stale socket file (no server behind it) is replaced, a live one is
        an error (another resolverguard runs with the same socket)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.path.exists():
            if _alive(self.path):
                raise OSError(f"{self.path}: another server is listening on this control socket")
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            words = line[:MAX_LINE].decode("utf-8", "replace").split()
            reply = await self.handle(words) if words else "error: empty command"
            writer.write(reply.encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            with contextlib.suppress(OSError):
                self.path.unlink()


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def send(path: Path, command: str, timeout: float = 120.0) -> str:
    """One command to a running server; raises OSError when none listens at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace").rstrip("\n")

"""What the dashboard changes: a name added to the allow or deny list file the policy names, then
the policy reloaded exactly as SIGHUP reloads it (validated in full; a broken policy leaves the
running one in force); pause and resume through the control socket's own `Service.command`.

The dashboard never edits the policy YAML: it appends to the first local file of
`lists.allow_files` (or `lists.deny_files`), so the user's policy stays theirs, the change is one
readable line with a comment saying when the dashboard added it, and `git diff` on a list
folder shows every click.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from resolverguard.config import Config

if TYPE_CHECKING:
    from resolverguard.web.context import Resolver

Which = Literal["allow", "deny"]


@dataclass(frozen=True, slots=True)
class ActionResult:
    ok: bool
    message: str
    status: int = 200  # the HTTP status the API answers with


def list_file(cfg: Config, which: Which) -> Path | None:
    """The first local file (not a folder, not a URL) the policy lists for `which`."""
    sources = cfg.lists.allow_files if which == "allow" else cfg.lists.deny_files
    for source in sources:
        if source.path is not None and not source.path.is_dir():
            return source.path
    return None


def append_name(path: Path, name: str, which: Which) -> bool:
    """Appends `name` unless the file already has it as a line; True when it wrote. Runs in a
    worker thread (a list file may have a million lines)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            if any(line.strip().lower().rstrip(".") == name for line in handle):
                return False
    except FileNotFoundError:
        pass
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        if path.stat().st_size and not _ends_with_newline(path):
            handle.write("\n")
        handle.write(f"# {which}ed from the dashboard {stamp}\n{name}\n")
    return True


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) == b"\n"


async def add_to_list(service: Resolver, name: str, which: Which) -> ActionResult:
    """`name` (already validated) into the policy's list file, then a reload."""
    path = list_file(service.cfg, which)
    if path is None:
        return ActionResult(
            False,
            f"the policy names no local {which} list file (add one to lists.{which}_files, e.g. lists/{which}.txt)",
            409,
        )
    try:
        wrote = await asyncio.to_thread(append_name, path, name, which)
    except OSError as err:
        return ActionResult(False, f"cannot write {path}: {err.strerror or err}", 500)
    if not wrote:
        return ActionResult(True, f"{name} was already in {path}")
    if not await service.reload_off_loop():
        return ActionResult(False, f"{name} written to {path}, but the reload was rejected (see the server's log)", 409)
    return ActionResult(True, f"{name} added to {path}; policy reloaded")


async def pause(service: Resolver, minutes: float) -> ActionResult:
    reply = await service.command(["pause", f"{minutes * 60:g}"])
    return ActionResult(reply.startswith("ok"), reply, 200 if reply.startswith("ok") else 400)


async def resume(service: Resolver) -> ActionResult:
    reply = await service.command(["resume"])
    return ActionResult(True, reply)


async def reload(service: Resolver) -> ActionResult:
    if await service.reload_off_loop():
        return ActionResult(True, f"reloaded {service.config_path}")
    return ActionResult(False, "reload rejected: the previous policy stays in force (see the server's log)", 409)

"""systemd itself for tests and benches: a *user* manager (`systemd --user`) that runs the units
`resolverguard unbound-module` prints, on a machine whose init is not systemd.

Why a user manager: the machine must not boot systemd as an init (it shares the filesystem, and a
booted systemd runs tmpfiles over /tmp and starts the machine's services); a user manager for an
unprivileged user touches none of that, and its job engine is the system manager's (one job per
unit, Type=notify, ExecReload=, ReloadPropagatedFrom=, After=). It needs: root to set it up, a
private mount namespace where /run/systemd/system exists (systemd's "booted" check), and a cgroup
of its own delegated to the user. Units go to `$XDG_RUNTIME_DIR/systemd/user`, which a user manager
reads, so the user needs no home.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from resolverguard.unboundconf import module_config, printed_files

SYSTEMD = Path("/lib/systemd/systemd")
CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))  # Debian 12 hybrid, then unified


def cgroup_root() -> Path | None:
    """The cgroup v2 hierarchy, where one is mounted read-write."""
    for root in CGROUP_ROOTS:
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            return root
    return None


def unavailable(user: str = "nobody") -> str | None:
    """Why a user manager cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (a delegated cgroup and a mount namespace)"
    if not SYSTEMD.exists() or not shutil.which("unshare") or not shutil.which("runuser"):
        return "needs systemd, unshare and runuser (apt-get install systemd util-linux)"
    if cgroup_root() is None:
        return "needs a writable cgroup v2 hierarchy"
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"needs the user {user!r}"
    return None


class UserManager:
    """`systemd --user` for `user`, and `systemctl --user` against it; `close` stops it and every
    process it started (its cgroup is killed)."""

    def __init__(self, work: Path, user: str = "nobody") -> None:
        entry = pwd.getpwnam(user)
        self.user, self.log = user, work / "user-manager.log"
        self.runtime = Path(f"/run/user/{entry.pw_uid}")
        self.units = self.runtime / "systemd" / "user"
        self.units.mkdir(parents=True, exist_ok=True)
        for path in (self.runtime, self.runtime / "systemd", self.units):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self.runtime.chmod(0o700)
        root = cgroup_root()
        assert root is not None, "unavailable() says why"
        self.cgroup = root / f"resolverguard-{user}"
        self._kill_cgroup()  # what a run that died left behind
        self.cgroup.mkdir()
        for path in [self.cgroup, *self.cgroup.iterdir()]:  # delegated: the manager makes its own below
            os.chown(path, entry.pw_uid, entry.pw_gid)
        script = (
            "mount -t tmpfs tmpfs /run/systemd && mkdir -p /run/systemd/system && "
            f"echo $$ > {self.cgroup}/cgroup.procs && exec setsid runuser -u {user} -- /usr/bin/env "
            f"XDG_RUNTIME_DIR={self.runtime} HOME={self.runtime} {SYSTEMD} --user --log-target=console"
        )
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                                         stdout=log, stderr=log)  # fmt: skip
        deadline = time.monotonic() + 60
        # (not `is-system-running`: outside the namespace systemctl sees no booted systemd, says "offline")
        while self.ctl("show", "--property=SystemState", "--value").stdout.strip() not in ("running", "degraded"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"systemd --user did not start: {self.log.read_text()}")
            time.sleep(0.2)

    def ctl(self, *args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = f"XDG_RUNTIME_DIR={self.runtime}"
        argv = ["runuser", "-u", self.user, "--", "/usr/bin/env", env, "systemctl", "--user", *args]
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)

    def install(self, name: str, text: str) -> None:
        path = self.units / name
        path.write_text(text)
        shutil.chown(path, self.user)

    def give(self, *paths: Path) -> None:
        """Makes `paths` the user's (the units' processes run as it)."""
        for path in paths:
            shutil.chown(path, self.user)

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # the manager stops its units and exits
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(20)
        self._kill_cgroup()
        for unit in self.units.glob("*.service"):
            unit.unlink()

    def _kill_cgroup(self) -> None:
        if not self.cgroup.exists():
            return
        kill = self.cgroup / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")
        deadline = time.monotonic() + 10
        while (self.cgroup / "cgroup.events").exists() and "populated 1" in (self.cgroup / "cgroup.events").read_text():
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for path in sorted(self.cgroup.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir():
                with contextlib.suppress(OSError):
                    path.rmdir()
        with contextlib.suppress(OSError):
            self.cgroup.rmdir()


def printed_unbound_units(
    work: Path, port: int, upstream: int, sock: Path, reload_lines: tuple[str, ...] | None = None
) -> dict[str, str]:
    """Two Unbound processes as `unbound-module --processes 2` prints them, for a user manager:
    process 1's config (a test's server lines plus the printed ones) and process 2's printed config
    (its own log file added) are written to `work`; returned are the units: Debian's unbound.service
    reduced to what matters here (Type=notify, the printed drop-in's Environment= and ExecReload=
    lines) and process 2's printed unit. `reload_lines`: other ExecReload= lines for both."""
    conf = work / "unbound.conf"
    printed = printed_files(module_config(sock, processes=2, unbound_conf=conf))
    second = next(k for k in printed if k.endswith(".conf"))
    unit2 = next(v for k, v in printed.items() if k.endswith("unbound-2.service")).split("# then:")[0]
    main_lines = [line for line in printed[""].splitlines() if not line.startswith("#") and line != "server:"]
    drop_in = [line.removeprefix("#   ") for line in printed[""].splitlines() if line.startswith("#   ExecReload=")]
    conf.write_text(
        f'server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  username: ""\n  chroot: ""\n'
        f'  directory: "{work}"\n  use-syslog: no\n  logfile: "{work}/unbound-1.log"\n  so-rcvbuf: 4m\n'
        "  do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n  qname-minimisation: no\n"
        + "\n".join(main_lines)
        + f'\nforward-zone:\n  name: "."\n  forward-addr: 127.0.0.1@{upstream}\nremote-control:\n  control-enable: no\n'
    )
    Path(second).write_text(printed[second] + f'server:\n    logfile: "{work}/unbound-2.log"\n')
    env = [line for line in unit2.splitlines() if line.startswith("Environment=")]
    reloads1 = [line for line in drop_in if line != "ExecReload="] if reload_lines is None else list(reload_lines)
    unit1 = "\n".join(
        [
            "[Unit]",
            "Description=Unbound DNS server (Debian's unbound.service with the printed drop-in)",
            "[Service]",
            "Type=notify",
            *env,
            f"ExecStart=/usr/sbin/unbound -d -p -c {conf}",
            *reloads1,
            "",
        ]
    )
    if reload_lines is not None:
        body = [line for line in unit2.splitlines() if not line.startswith("ExecReload=")]
        at = next(i for i, line in enumerate(body) if line.startswith("ExecStart=")) + 1
        unit2 = "\n".join([*body[:at], *reload_lines, *body[at:]]) + "\n"
    return {"unbound.service": unit1, "unbound-2.service": unit2}

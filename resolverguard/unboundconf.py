"""What `resolverguard unbound-module` prints: the lines that put the module into a user's Unbound.

With `--processes N` it also prints what the second and later Unbound processes need (docs/unbound.md,
"More than one core"): Unbound's threads share one embedded Python, so the module gains a core only
as another process on the same port. Each extra process's config *includes* the first's and overrides
only what two processes must not share, so a later change to the first config applies to all of them.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_SOCKET = Path("/run/resolverguard/unbound.sock")
MODULE_FILE = Path(__file__).resolve().parent / "unbound_module.py"
UNBOUND_CONF = Path("/etc/unbound/unbound.conf")  # Debian's; unbound.service runs it
DIST_PACKAGES = "/usr/lib/python3/dist-packages"  # Debian's embedded Python does not look there by itself
FILE_HEAD = "# ==> {} <=="  # one block per file to write, as `head` marks files
# Seconds each `systemctl reload` of an Unbound unit holds its reload job after the SIGHUP. Why (#17):
# a SIGHUP that comes while Unbound is still reloading makes it reload again right after, before it
# has answered what it read, and a storm of them (a script that reloads per change) stalls it: with
# the module, reloads 0.1 s apart failed lookups after 3 tries, 0.3 s apart none did
# (bench/results/reload_storm*.md). systemd runs one reload job per unit at a time and merges the
# requests that come meanwhile into one more, so the sleep keeps reloads this far apart at least
# (through systemd 252, 100 requests 0.1 s apart: 0 lookups failed, bench/results/systemd_reloads.md).
RELOAD_SETTLE = 0.3
RELOAD_LINES = ("ExecReload=+/bin/kill -HUP $MAINPID", f"ExecReload=/bin/sleep {RELOAD_SETTLE:g}")


def module_config(
    socket_path: Path, module: Path = MODULE_FILE, processes: int = 1, unbound_conf: Path = UNBOUND_CONF
) -> str:
    """The unbound.conf lines, Unbound's environment and the service to run; with `processes` > 1,
    one pair of blocks per extra process: its config file and its systemd unit."""
    one_per_core = (
        "    num-threads: 1      # one process per core: Unbound's threads share one Python\n"
        "    so-reuseport: yes   # the processes share the port; the kernel spreads clients over them\n"
        if processes > 1
        else ""
    )
    text = (
        f"# resolverguard module: {module}\n"
        "# unbound.conf (server: module-config puts the module before the iterator):\n"
        "server:\n"
        '    module-config: "python iterator"   # "python validator iterator" with DNSSEC validation\n'
        f"{one_per_core}"
        "python:\n"
        f'    python-script: "{module}"\n'
        "# Unbound's environment and reload (e.g. systemctl edit unbound, [Service] section; the empty\n"
        "# ExecReload= replaces Debian's, then the same SIGHUP and a pause before the next reload):\n"
        f"#   Environment=PYTHONPATH={DIST_PACKAGES}\n"
        f"#   Environment=RESOLVERGUARD_SOCKET={socket_path}\n"
        "#   ExecReload=\n"
        + "".join(f"#   {line}\n" for line in RELOAD_LINES)
        + "# and the verdict service it asks (fails open while the service is down):\n"
        f"#   resolverguard unbound-service --config /etc/resolverguard/policy.yaml --socket {socket_path}\n"
    )
    for k in range(2, processes + 1):
        text += extra_process(k, processes, socket_path, unbound_conf)
    return text


def printed_files(text: str) -> dict[str, str]:
    """`module_config`'s text by file: "" for the lines every process's config gets, else the text
    after each `FILE_HEAD` line, keyed by the path it names (what a user copies where; tests and
    bench/systemd_reloads.py install them the same way)."""
    head, tail = FILE_HEAD.split("{}")
    files, key = {"": ""}, ""
    for line in text.splitlines(keepends=True):
        if line.startswith(head) and line.rstrip().endswith(tail):
            key = line.rstrip()[len(head) : -len(tail)].split(": ", 1)[1]
            files[key] = ""
        else:
            files[key] += line
    return files


def process_conf_path(k: int, unbound_conf: Path = UNBOUND_CONF) -> Path:
    return unbound_conf.with_name(f"{unbound_conf.stem}-{k}{unbound_conf.suffix}")


def extra_process(k: int, processes: int, socket_path: Path, unbound_conf: Path) -> str:
    """Process k's config and unit. Its config includes the first's whole (interface, port,
    forward-zone, the module lines above) and overrides the pid file and the control socket:
    `control-interface` is a list Unbound only appends to, so the included first socket cannot be
    replaced, and a second process binding it would take it from the first; this one is reloaded
    with SIGHUP instead (`systemctl reload unbound` reaches it through ReloadPropagatedFrom)."""
    conf = process_conf_path(k, unbound_conf)
    unit = f"unbound-{k}.service"
    return (
        "#\n" + FILE_HEAD.format(f"process {k} of {processes}: {conf}") + "\n"
        f'include-toplevel: "{unbound_conf}"\n'
        "server:\n"
        f'    pidfile: "/run/unbound-{k}.pid"\n'
        "remote-control:\n"
        "    control-enable: no   # the first process's control socket is its own: reload this one with SIGHUP\n"
        + FILE_HEAD.format(f"process {k} of {processes}: /etc/systemd/system/{unit}")
        + "\n"
        "[Unit]\n"
        f"Description=Unbound DNS server, process {k} of {processes} (resolverguard module, one process per core)\n"
        "After=network.target unbound.service\n"
        "PartOf=unbound.service\n"
        "ReloadPropagatedFrom=unbound.service\n"
        "[Service]\n"
        "Type=notify\n"
        "Restart=on-failure\n"
        f"Environment=PYTHONPATH={DIST_PACKAGES}\n"
        f"Environment=RESOLVERGUARD_SOCKET={socket_path}\n"
        f"ExecStart=/usr/sbin/unbound -d -p -c {conf}\n" + "".join(f"{line}\n" for line in RELOAD_LINES) + "[Install]\n"
        "WantedBy=unbound.service\n"
        f"# then: sudo systemctl daemon-reload && sudo systemctl enable --now {unit}\n"
    )

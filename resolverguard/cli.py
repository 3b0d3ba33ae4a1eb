"""The one command line: `serve`, `score` and `check`.

Exit codes are part of the contract: 0 success, 2 for an invalid policy or model (with the
`file:line: key: problem` message on stderr), 1 for anything else that stops the server from starting.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from resolverguard.config import Config, load_config, resolve_thresholds
from resolverguard.errors import ConfigError, ResolverGuardError
from resolverguard.model import default_model_path, load_metadata, load_model, metadata_path
from resolverguard.names import NameParser
from resolverguard.nativelog import line_buffer_native_stderr
from resolverguard.pipeline import groups_for, resolv_conf_upstreams
from resolverguard.service import Service, run_event_loop, run_until_signalled
from resolverguard.verdicts import DEFAULT_THRESHOLDS, Policy

SCORE_BATCH = 256


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at exit
        return code
    except ConfigError as err:
        print(err.location(), file=sys.stderr)
        return 2
    except ResolverGuardError as err:
        print(f"resolverguard: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `resolverguard top log | head`: the reader left. Point stdout at /dev/null so the flush at
        # exit does not raise again (the recipe of Python's signal docs), and exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe


def version() -> str:
    """The installed distribution's version; the package's own when run from a source tree."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from resolverguard import __version__

    try:
        return dist_version("resolverguard")
    except PackageNotFoundError:
        return __version__


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resolverguard", description="DNS forwarder that sinkholes DGA domains")
    p.add_argument("--version", action="version", version=f"resolverguard {version()}")
    sub = p.add_subparsers(required=True, metavar="COMMAND", dest="command_name")
    serve = sub.add_parser("serve", help="run the resolver")
    serve.add_argument("--config", type=Path, help="policy file (YAML); built-in defaults without one")
    serve.add_argument("--listen", action="append", metavar="ADDR:PORT", help="overrides the file; repeatable")
    serve.add_argument(
        "--upstream",
        action="append",
        metavar="ADDR[:PORT]|tls://NAME@ADDR|https://NAME@ADDR/PATH",
        help="overrides the file; repeatable",
    )
    serve.add_argument("--model", type=Path, help="a .tflite model (its .json metadata beside it)")
    serve.set_defaults(run=cmd_serve)
    module = sub.add_parser("unbound-module", help="print the unbound.conf lines and the path of the Unbound module")
    module.add_argument("--socket", type=Path, help="the verdict service's socket (/run/resolverguard/unbound.sock)")
    module.add_argument(
        "--processes",
        type=process_count,
        default=1,
        help="Unbound processes on one port, one per core: also print each extra one's config and unit",
    )
    module.add_argument(
        "--unbound-conf",
        type=Path,
        help="the first process's config, which the others include (/etc/unbound/unbound.conf)",
    )
    module.set_defaults(run=cmd_unbound_module)
    verdicts = sub.add_parser("unbound-service", help="the verdict service the Unbound module asks (docs/unbound.md)")
    verdicts.add_argument("--config", type=Path, help="policy file (YAML); built-in defaults without one")
    verdicts.add_argument("--socket", type=Path, help="Unix socket to listen on (/run/resolverguard/unbound.sock)")
    verdicts.add_argument("--model", type=Path, help="a .tflite model (its .json metadata beside it)")
    verdicts.set_defaults(run=cmd_unbound_service)
    score = sub.add_parser("score", help="score names: name, scored name, score, action (tab separated)")
    score.add_argument("--model", type=Path)
    score.add_argument("--input", type=Path, help="file with one name per line, or - for stdin")
    score.add_argument("names", nargs="*")
    score.set_defaults(run=cmd_score)
    check = sub.add_parser("check", help="validate a policy file (exit 0, or 2 with file:line: key: problem)")
    check.add_argument("file", type=Path)
    check.set_defaults(run=cmd_check)
    explain = sub.add_parser("explain", help="show the whole decision for a name under a policy")
    explain.add_argument("name")
    explain.add_argument("--config", type=Path)
    explain.add_argument("--model", type=Path)
    explain.add_argument("--client", default="127.0.0.1", help="client address the query comes from")
    explain.set_defaults(run=cmd_explain)
    top = sub.add_parser("top", help="summarise a query log: actions, top blocked names and clients")
    top.add_argument("logs", type=Path, nargs="+", metavar="LOGFILE")
    top.add_argument("--since", help="only lines newer than this, e.g. 30m, 1h, 7d")
    top.set_defaults(run=cmd_top)
    lists = sub.add_parser("lists", help="list subscriptions: `lists update` downloads every list URL now")
    lists.add_argument("action", choices=["update"])
    lists.add_argument("--config", type=Path, required=True, help="the policy file whose list URLs to fetch")
    lists.add_argument("--socket", type=Path, help="the running server's control socket (default: the policy's)")
    lists.set_defaults(run=cmd_lists)
    pause = sub.add_parser("pause", help="pause blocking on the running server, e.g. `pause 5m`")
    pause.add_argument("duration", help="how long: 30s, 5m, 1h")
    resume = sub.add_parser("resume", help="end a pause now")
    status = sub.add_parser("status", help="is blocking on or paused, and for how long")
    store = sub.add_parser("store", help="the query store's schema: `store status`, `store migrate [--dry-run]`")
    store.add_argument("action", choices=["status", "migrate"])
    where = store.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="an SQLite file or a postgresql:// URL")
    where.add_argument("--config", type=Path, help="the policy whose query_store to use")
    store.add_argument("--dry-run", action="store_true", help="migrate: apply in a transaction, then roll back")
    store.set_defaults(run=cmd_store)
    password = sub.add_parser("dashboard-password", help="hash a dashboard password for dashboard.password_hash")
    password.add_argument("--stdin", action="store_true", help="read the password from standard input (scripts)")
    password.set_defaults(run=cmd_dashboard_password)
    importer = sub.add_parser("import", help="write a policy from a Pi-hole, AdGuard Home or Blocky setup")
    source = importer.add_subparsers(required=True, metavar="FROM", dest="source")
    pihole = source.add_parser("pihole", help="from gravity.db (v5/v6), custom.list, pihole.toml, setupVars.conf")
    pihole.add_argument("--gravity", type=Path, required=True, help="/etc/pihole/gravity.db")
    pihole.add_argument("--custom-list", type=Path, help="/etc/pihole/custom.list (v5 local DNS records)")
    pihole.add_argument("--toml", type=Path, help="/etc/pihole/pihole.toml (v6: upstreams, hosts, CNAMEs)")
    pihole.add_argument("--setup-vars", type=Path, help="/etc/pihole/setupVars.conf (v5: upstreams, reverse server)")
    adguard = source.add_parser("adguardhome", help="from AdGuardHome.yaml")
    adguard.add_argument("--config", type=Path, required=True, help="AdGuardHome.yaml")
    blocky = source.add_parser("blocky", help="from Blocky's config.yml")
    blocky.add_argument("--config", type=Path, required=True, help="config.yml")
    for each in (pihole, adguard, blocky):
        each.add_argument("--out", type=Path, required=True, help="folder for policy.yaml and lists/")
        each.set_defaults(run=cmd_import)
    for control in (pause, resume, status):
        control.add_argument("--config", type=Path, help="the server's policy file (for control_socket)")
        control.add_argument("--socket", type=Path, help="the control socket (default: control_socket's default)")
        control.set_defaults(run=cmd_control)
    return p


def cmd_import(args: argparse.Namespace) -> int:
    """Writes OUT/policy.yaml and OUT/lists/*, then validates the policy as `check` would."""
    from resolverguard import importers

    if args.source == "pihole":
        draft = importers.import_pihole(args.gravity, args.custom_list, args.toml, args.setup_vars)
    elif args.source == "adguardhome":
        draft = importers.import_adguardhome(args.config)
    else:
        draft = importers.import_blocky(args.config)
    policy = importers.write(draft, args.out)
    cfg = load_config(policy)
    print(
        f"{policy}: {len(cfg.lists.deny_files)} deny and {len(cfg.lists.allow_files)} allow lists, "
        f"{len(cfg.local_records.records)} local records, {len(cfg.conditional_forwarding)} forwarded zones, "
        f"{len(cfg.groups)} client groups"
    )
    for note in draft.notes:
        print(f"  not carried over: {note}")
    print(f"next: resolverguard lists update --config {policy} && resolverguard serve --config {policy}")
    return 0


def control_socket(args: argparse.Namespace) -> Path | None:
    """The socket the running server listens on: --socket, else the policy's, else the default."""
    from resolverguard.control import default_socket

    if args.socket is not None:
        return Path(args.socket)
    where = load_config(args.config).control_socket if args.config else True
    if where is False:
        return None
    return where if isinstance(where, Path) else default_socket()


def cmd_control(args: argparse.Namespace) -> int:
    """`pause DURATION`, `resume`, `status`: one line to the server's control socket, its reply printed."""
    from resolverguard.control import send
    from resolverguard.logtop import parse_span

    command = args.command_name
    if command == "pause":
        try:
            command = f"pause {parse_span(args.duration).total_seconds():g}"
        except ValueError as err:
            print(f"resolverguard pause: {err}", file=sys.stderr)
            return 2
    path = control_socket(args)
    if path is None:
        print("resolverguard: control_socket is off in the policy", file=sys.stderr)
        return 1
    try:
        reply = send(path, command)
    except OSError as err:
        print(f"resolverguard: no server on {path} ({err.strerror or err}); is it running?", file=sys.stderr)
        return 1
    print(reply)
    return 0 if reply.startswith("ok") else 1


def cmd_lists(args: argparse.Namespace) -> int:
    """Downloads every list URL of the policy into the cache (the running server re-reads it on
    its next refresh, or at once through its control socket: see `pause`)."""
    from resolverguard.pipeline import subscribed
    from resolverguard.subscriptions import Downloader, default_cache_dir

    cfg = load_config(args.config)
    urls = subscribed(cfg)
    path = control_socket(args)
    if urls and path is not None and path.exists():  # a running server downloads and swaps them itself
        from resolverguard.control import send

        try:
            reply = send(path, "lists update")
        except OSError:
            pass
        else:
            print("\n".join(reply.removeprefix("ok: ").split("; ")))
            failed = " failed" in reply or ": kept" in reply or not reply.startswith("ok")
            return 1 if failed else 0
    if not urls:
        print(f"{args.config}: no list URLs (lists.allow_files / deny_files)")
        return 0
    subs = cfg.subscriptions
    downloader = Downloader(subs.cache_dir or default_cache_dir(), subs.max_bytes, subs.timeout)
    try:
        results = downloader.fetch_all(urls)
    finally:
        downloader.close()
    for result in results:
        print(result)
    return 0 if all(r.status in ("updated", "not modified") for r in results) else 1


def cmd_store(args: argparse.Namespace) -> int:
    """`store status` prints the schema version and what a migration would apply; `store migrate`
    applies it (the resolver also migrates at start; this is for doing it at a chosen time, and for
    `--dry-run`, which proves the migrations work on this store and changes nothing)."""
    from resolverguard.store import StoreError, migrate_store, safe_url, schema_status

    target = args.url or load_config(args.config).query_store.path
    if not target:
        print(f"resolverguard store: {args.config}: query_store is off in the policy", file=sys.stderr)
        return 1
    try:
        found = schema_status(target) if args.action == "status" else migrate_store(target, dry_run=args.dry_run)
    except StoreError as err:
        print(f"resolverguard store: {err}", file=sys.stderr)
        return 1
    print(f"{safe_url(str(target))}: {found.describe()}")
    if args.action == "status":
        for version, name, applied in found.history:
            print(f"  {version} {name} (applied {datetime.fromtimestamp(applied, UTC):%Y-%m-%d %H:%M:%S} UTC)")
        return 0 if found.usable else 1
    done = ", ".join(f"{m.version} {m.name}" for m in found.pending)
    if args.dry_run:
        print(f"dry run: {'applied and rolled back: ' + done if done else 'nothing to apply'}; nothing changed")
    else:
        print(f"applied: {done}" if done else "nothing to apply")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from resolverguard.explain import explain

    cfg = load_config(args.config) if args.config else Config()
    if args.model:
        cfg = replace(cfg, model=args.model)
    explain(args.name, cfg, load_model(cfg.model), sys.stdout, args.client)
    return 0


def cmd_dashboard_password(args: argparse.Namespace) -> int:
    """Prints the scrypt hash of a password for `dashboard.password_hash`; the password itself is
    never written anywhere (asked twice at a terminal, or one line on stdin with --stdin)."""
    import getpass

    from resolverguard.web.auth import PasswordHash

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("dashboard password: ")
        if getpass.getpass("again: ") != password:
            print("resolverguard: the two passwords differ", file=sys.stderr)
            return 2
    if len(password) < 8:
        print("resolverguard: use at least 8 characters", file=sys.stderr)
        return 2
    print(PasswordHash.make(password).text)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from resolverguard.logtop import top_command

    try:
        return top_command(args.logs, args.since, sys.stdout)
    except BrokenPipeError:
        raise
    except (OSError, ValueError) as err:
        print(f"resolverguard top: {err}", file=sys.stderr)
        return 2


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    model_path = cfg.model or default_model_path()
    groups = groups_for(cfg, load_metadata(metadata_path(model_path)).thresholds)
    lists = groups.default.lists
    print(
        f"{args.file}: ok ({lists.allowed_count} allowed, {lists.denied_count} denied rules, "
        f"{len(groups.groups)} client groups, model {model_path.name})"
    )
    for line in groups.list_summaries():
        print(f"  {line}")
    return 0


def _names(args: argparse.Namespace, stdin: TextIO) -> Iterator[str]:
    yield from args.names
    if args.input is not None:
        handle = stdin if str(args.input) == "-" else args.input.open(encoding="utf-8", errors="replace")
        with handle:
            for line in handle:
                if line.strip() and not line.lstrip().startswith("#"):
                    yield line.strip()


def cmd_score(args: argparse.Namespace, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    model = load_model(args.model)
    policy = Policy(resolve_thresholds(DEFAULT_THRESHOLDS, model.metadata.thresholds))
    parser, form = NameParser(), model.metadata.input_form
    batch: list[tuple[str, str | None]] = []

    def flush() -> None:
        texts = [t for _, t in batch if t is not None]
        scores = iter(model.score(texts).tolist()) if texts else iter(())
        for name, text in batch:
            if text is None:
                stdout.write(f"{name}\t-\t-\tpass\n")
            else:
                score = next(scores)
                stdout.write(f"{name}\t{text}\t{score:.6f}\t{policy.action_for(score).value}\n")
        batch.clear()

    for name in _names(args, stdin):
        batch.append((name, parser.parse(name).model_input(form)))
        if len(batch) >= SCORE_BATCH:
            flush()
    flush()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    line_buffer_native_stderr()  # before LiteRT's first log line: see resolverguard.nativelog
    cfg = load_config(args.config) if args.config else Config()
    cfg = cfg.with_overrides(args.listen, args.upstream)
    if args.model:
        cfg = replace(cfg, model=args.model)
    from_resolv_conf = not cfg.upstreams
    if from_resolv_conf:
        cfg = replace(cfg, upstreams=resolv_conf_upstreams(cfg.listen))
        if not cfg.upstreams:
            raise ConfigError("no upstream: give --upstream or set upstreams in the policy", file=cfg.source)
    # What the command line (or resolv.conf) fixed stays fixed across reloads of the file.
    fixed = (("listen", args.listen), ("upstreams", args.upstream or from_resolv_conf), ("model", args.model))
    overrides = {key: getattr(cfg, key) for key, given in fixed if given}
    model = load_model(cfg.model)  # also in the parent of workers: a bad model fails here, at once
    if cfg.workers > 1:
        from resolverguard.workers import run_workers

        return run_workers(cfg, args.config, overrides)
    service = Service(cfg, model, args.config, overrides)
    try:
        run_event_loop(run_until_signalled(service))
    except OSError as err:
        print(f"resolverguard: cannot listen: {err}{bind_hint(err, cfg)}", file=sys.stderr)
        return 1
    return 0


def cmd_unbound_module(args: argparse.Namespace) -> int:
    from resolverguard.unboundconf import DEFAULT_SOCKET, UNBOUND_CONF, module_config

    text = module_config(
        args.socket or DEFAULT_SOCKET,
        processes=args.processes,
        unbound_conf=(args.unbound_conf or UNBOUND_CONF).absolute(),  # Unbound reads include paths from its own cwd
    )
    print(text, end="")
    return 0


def cmd_unbound_service(args: argparse.Namespace) -> int:
    """The verdict service: the policy's decisions for the Unbound module, on a Unix socket."""
    from resolverguard.unboundconf import DEFAULT_SOCKET
    from resolverguard.unboundservice import VerdictService, run_service

    cfg = load_config(args.config) if args.config else Config()
    if args.model:
        cfg = replace(cfg, model=args.model)
    service = VerdictService(cfg, load_model(cfg.model), args.socket or DEFAULT_SOCKET, args.config)
    try:
        run_event_loop(run_service(service))
    except OSError as err:
        print(f"resolverguard: cannot listen on {service.path}: {err}", file=sys.stderr)
        return 1
    return 0


def process_count(text: str) -> int:
    """1 to 64: a process per core of any machine that runs this (each holds a Python and a cache)."""
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of processes from 1 to 64")
    return count


def bind_hint(err: OSError, cfg: Config) -> str:
    """What to do about a port that could not be bound, for the two usual causes."""
    low = [str(ep) for ep in cfg.listen if 0 < ep.port < 1024]
    if err.errno in (errno.EACCES, errno.EPERM) and low:
        return (
            f"\n  ports below 1024 ({', '.join(low)}) need privileges: run under systemd with "
            "AmbientCapabilities=CAP_NET_BIND_SERVICE (examples/resolverguard.service), or "
            "`sudo setcap cap_net_bind_service=+ep` on the Python binary, or listen on a port above "
            "1024 (--listen 127.0.0.1:5335) and forward 53 to it"
        )
    if err.errno == errno.EADDRINUSE:
        return "\n  another program holds that port (`ss -lunp | grep PORT` shows which); pick another with --listen"
    return ""

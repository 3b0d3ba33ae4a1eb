"""The one command line: `serve`, `score` and `check`.

Exit codes are part of the contract: 0 success, 2 for an invalid policy or model (with the
`file:line: key: problem` message on stderr), 1 for anything else that stops the server from starting.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from resolverguard.config import Config, load_config, resolve_thresholds
from resolverguard.errors import ConfigError, ResolverGuardError
from resolverguard.lists import ParseReport
from resolverguard.model import default_model_path, load_metadata, load_model, metadata_path
from resolverguard.names import NameParser
from resolverguard.pipeline import groups_for, resolv_conf_upstreams
from resolverguard.service import Service, run_event_loop, run_until_signalled
from resolverguard.verdicts import DEFAULT_THRESHOLDS, Policy

SCORE_BATCH = 256


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except ConfigError as err:
        print(err.location(), file=sys.stderr)
        return 2
    except ResolverGuardError as err:
        print(f"resolverguard: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resolverguard", description="DNS forwarder that sinkholes DGA domains")
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the resolver")
    serve.add_argument("--config", type=Path, help="policy file (YAML); built-in defaults without one")
    serve.add_argument("--listen", action="append", metavar="ADDR:PORT", help="overrides the file; repeatable")
    serve.add_argument("--upstream", action="append", metavar="ADDR[:PORT]", help="overrides the file; repeatable")
    serve.add_argument("--model", type=Path, help="a .tflite model (its .json metadata beside it)")
    serve.set_defaults(run=cmd_serve)
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
    return p


def cmd_explain(args: argparse.Namespace) -> int:
    from resolverguard.explain import explain

    cfg = load_config(args.config) if args.config else Config()
    if args.model:
        cfg = replace(cfg, model=args.model)
    explain(args.name, cfg, load_model(cfg.model), sys.stdout, args.client)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from resolverguard.logtop import top_command

    try:
        return top_command(args.logs, args.since, sys.stdout)
    except (OSError, ValueError) as err:
        print(f"resolverguard top: {err}", file=sys.stderr)
        return 2


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file)
    model_path = cfg.model or default_model_path()
    groups = groups_for(cfg, load_metadata(metadata_path(model_path)).thresholds)
    lists = groups.default.lists
    print(
        f"{args.file}: ok ({len(lists.allow)} allowed, {len(lists.deny)} denied domains, "
        f"{len(groups.groups)} client groups, model {model_path.name})"
    )
    own = [(f"groups[{i}].lists", g.lists) for i, g in enumerate(groups.groups) if g.lists is not lists]
    for prefix, group_lists in [("lists", lists), *own]:
        for kind, path, report in group_lists.reports:
            print(f"  {prefix}.{kind}: {path}: {list_file_summary(report)}")
    return 0


def list_file_summary(report: ParseReport) -> str:
    """What a list file contained and skipped (adblock lists carry rules a resolver cannot use)."""
    text = f"{report.entries} entries, {report.skipped} lines skipped"
    if report.first_skipped:
        text += f" (first skipped lines: {', '.join(map(str, report.first_skipped))})"
    return text


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
        print(f"resolverguard: cannot listen: {err}", file=sys.stderr)
        return 1
    return 0
